from pbistream.cli import main

main(prog_name="pbistream")
