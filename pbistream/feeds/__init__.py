"""Feeds: every path from a source into the client (MQTT, a file, a command, a dataset's rows).

* :mod:`pbistream.feeds.mqtt`: an MQTT subscription (``pbistream bridge mqtt``)
* :mod:`pbistream.feeds.tail`: a growing JSON Lines or CSV file (``pbistream tail``)
* :mod:`pbistream.feeds.watch`: a command run on a schedule (``pbistream watch``)
* :mod:`pbistream.feeds.forward`: a dataset's stored rows to an upstream (the relay)
* :mod:`pbistream.feeds.payloads`: input → rows (pure); :mod:`pbistream.feeds.runner`:
  what the command-line feeds share (the client, status lines, signals)

Each feed commits what it read to the client's spool before it lets go of it
(acknowledges the MQTT message, moves the file checkpoint): nothing is lost
between the source and the spool, and the client delivers from there.
"""
