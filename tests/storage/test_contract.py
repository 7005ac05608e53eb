"""The storage contract: every backend passes this one suite (see conftest ``storage``)."""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from storage_helpers import follow_while_writing

from pbistream.grants import secret_hash
from pbistream.schema import Column, Dataset, Mode, Retention, Table
from pbistream.storage.base import Dashboard, Grant, InsertResult, Storage
from pbistream.values import DataType

TABLE = "RealTimeData"


def make_dataset(
    *, group_id: str | None = None, name: str = "Sensors", created_at: float = 0.0
) -> Dataset:
    return Dataset(
        id=secrets.token_hex(8),
        name=name,
        mode=Mode.PUSH_STREAMING,
        retention=Retention.BASIC_FIFO,
        tables=[
            Table(
                TABLE,
                (
                    Column("temp", DataType.DOUBLE, {"formatString": "0.0"}),
                    Column("label", DataType.STRING),
                ),
                {"measures": [{"name": "Avg", "expression": "AVERAGE(temp)"}]},
            )
        ],
        group_id=group_id,
        push_key="k-" + secrets.token_hex(4),
        created_at=created_at or time.time(),
        properties={"description": "x"},
    )


@pytest.fixture
def dataset(storage: Storage) -> Dataset:
    ds = make_dataset()
    storage.create_dataset(ds)
    return ds


def rows(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"temp": float(i), "label": f"r{i}"} for i in range(start, start + n)]


def temps(stored: list[Any]) -> list[float]:
    return [r.data["temp"] for r in stored]


# --- datasets ----------------------------------------------------------------------
def test_dataset_round_trips_with_tables_and_properties(storage: Storage) -> None:
    ds = make_dataset(group_id="g1")
    storage.create_dataset(ds)
    got = storage.get_dataset(ds.id)
    assert got == ds
    assert got is not None and got.tables[0].column("temp") is not None
    assert got.tables[0].columns[0].properties == {"formatString": "0.0"}
    assert storage.get_dataset("nope") is None


def test_list_datasets_is_scoped_by_group(storage: Storage) -> None:
    mine = make_dataset(name="mine", created_at=1.0)
    other = make_dataset(name="other", group_id="g1", created_at=2.0)
    third = make_dataset(name="third", group_id="g2", created_at=3.0)
    for ds in (mine, other, third):
        storage.create_dataset(ds)
    assert [d.name for d in storage.list_datasets()] == ["mine"]
    assert [d.name for d in storage.list_datasets("g1")] == ["other"]
    assert storage.list_datasets("g3") == []
    assert [d.name for d in storage.list_datasets(all_groups=True)] == ["mine", "other", "third"]


def test_delete_dataset_removes_its_rows(storage: Storage, dataset: Dataset) -> None:
    storage.insert_rows(dataset.id, TABLE, rows(3), received_at=1.0, sequence_number=5)
    assert storage.delete_dataset(dataset.id) is True
    assert storage.get_dataset(dataset.id) is None
    assert storage.read_rows(dataset.id) == []
    assert storage.count_rows(dataset.id, TABLE) == 0
    assert storage.last_sequence_number(dataset.id, TABLE) is None
    assert storage.delete_dataset(dataset.id) is False


def test_replace_table_keeps_rows(storage: Storage, dataset: Dataset) -> None:
    storage.insert_rows(dataset.id, TABLE, rows(4), received_at=1.0)
    new = Table(TABLE, (Column("temp", DataType.DOUBLE), Column("extra", DataType.INT64)))
    storage.replace_table(dataset.id, new)
    added = Table("Second", (Column("x", DataType.BOOLEAN),))
    storage.replace_table(dataset.id, added)
    got = storage.get_dataset(dataset.id)
    assert got is not None
    assert [t.name for t in got.tables] == [TABLE, "Second"]
    assert got.table(TABLE) == new
    assert storage.count_rows(dataset.id, TABLE) == 4
    assert len(storage.read_rows(dataset.id, TABLE)) == 4


def test_replace_table_and_push_key_of_missing_dataset_raise(storage: Storage) -> None:
    with pytest.raises(KeyError):
        storage.replace_table("missing", Table("T", ()))
    with pytest.raises(KeyError):
        storage.set_push_key("missing", "k")


def test_set_push_key_rotates(storage: Storage, dataset: Dataset) -> None:
    storage.set_push_key(dataset.id, "new-key")
    got = storage.get_dataset(dataset.id)
    assert got is not None and got.push_key == "new-key"


# --- rows --------------------------------------------------------------------------
def test_insert_returns_ids_and_count(storage: Storage, dataset: Dataset) -> None:
    first = storage.insert_rows(dataset.id, TABLE, rows(3), received_at=10.0)
    assert first.stored == 3 and not first.duplicate and first.row_count == 3
    assert first.first_id is not None and first.last_id == first.first_id + 2
    second = storage.insert_rows(dataset.id, TABLE, rows(2, 3), received_at=11.0)
    assert second.first_id is not None and first.last_id is not None
    assert second.first_id > first.last_id
    assert second.row_count == 5
    stored = storage.read_rows(dataset.id, TABLE)
    assert [r.id for r in stored] == sorted({r.id for r in stored})
    assert stored[0].id == first.first_id and stored[-1].id == second.last_id
    assert temps(stored) == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert stored[0].received_at == 10.0 and stored[0].table == TABLE


def test_insert_nothing(storage: Storage, dataset: Dataset) -> None:
    assert storage.insert_rows(dataset.id, TABLE, [], received_at=1.0) == InsertResult(0, False, 0)


def test_insert_into_missing_dataset_raises(storage: Storage, dataset: Dataset) -> None:
    with pytest.raises(KeyError):
        storage.insert_rows("missing", TABLE, rows(1), received_at=1.0, sequence_number=3)
    assert storage.count_rows("missing", TABLE) == 0
    assert storage.last_sequence_number("missing", TABLE) is None
    # The failed transaction was rolled back: the next write works.
    assert storage.insert_rows(dataset.id, TABLE, rows(1), received_at=1.0).stored == 1


def test_read_by_cursor_window_order_and_limit(storage: Storage, dataset: Dataset) -> None:
    for t in range(5):  # two rows at each of t = 100..104
        storage.insert_rows(dataset.id, TABLE, rows(2, 2 * t), received_at=100.0 + t)
    storage.insert_rows(dataset.id, "Other", rows(1, 50), received_at=102.5)
    everything = storage.read_rows(dataset.id)
    assert len(everything) == 11
    mid = everything[3].id
    assert temps(storage.read_rows(dataset.id, TABLE, after_id=mid)) == [4, 5, 6, 7, 8, 9]
    assert temps(storage.read_rows(dataset.id, TABLE, since=101.0, until=103.0)) == [2, 3, 4, 5]
    assert temps(storage.read_rows(dataset.id, since=102.5)) == [6, 7, 8, 9, 50]
    assert temps(storage.read_rows(dataset.id, TABLE, newest_first=True, limit=3)) == [9, 8, 7]
    assert temps(storage.read_rows(dataset.id, TABLE, limit=2)) == [0, 1]
    # Across tables, by cursor: merged in id order.
    assert temps(storage.read_rows(dataset.id, newest_first=True, limit=3)) == [50, 9, 8]
    assert temps(storage.read_rows(dataset.id, after_id=everything[8].id)) == [9, 50]
    assert temps(storage.read_rows(dataset.id, limit=2)) == [0, 1]
    assert temps(storage.read_rows(dataset.id, TABLE, after_id=mid, limit=2, newest_first=True))
    assert storage.read_rows(dataset.id, TABLE, limit=0) == []
    assert [r.table for r in storage.read_rows(dataset.id, "Other")] == ["Other"]
    assert storage.read_rows("other-dataset") == []


def test_ids_are_never_reused_after_deletes(storage: Storage, dataset: Dataset) -> None:
    first = storage.insert_rows(dataset.id, TABLE, rows(3), received_at=1.0)
    assert storage.delete_rows(dataset.id, TABLE) == 3
    again = storage.insert_rows(dataset.id, TABLE, rows(1), received_at=2.0)
    assert first.last_id is not None and again.first_id is not None
    assert again.first_id > first.last_id


def test_count_rows_follows_inserts_and_deletes(storage: Storage, dataset: Dataset) -> None:
    assert storage.count_rows(dataset.id, TABLE) == 0
    storage.insert_rows(dataset.id, TABLE, rows(7), received_at=1.0)
    storage.insert_rows(dataset.id, "Other", rows(2), received_at=1.0)
    assert storage.count_rows(dataset.id, TABLE) == 7
    assert storage.count_rows(dataset.id, "Other") == 2
    assert storage.delete_rows(dataset.id, TABLE) == 7
    assert storage.count_rows(dataset.id, TABLE) == 0
    assert storage.count_rows(dataset.id, "Other") == 2
    assert storage.delete_rows(dataset.id, TABLE) == 0


def test_sequence_numbers_dedupe(storage: Storage, dataset: Dataset) -> None:
    assert storage.last_sequence_number(dataset.id, TABLE) is None
    ok = storage.insert_rows(dataset.id, TABLE, rows(2), received_at=1.0, sequence_number=10)
    assert ok.stored == 2 and not ok.duplicate
    assert storage.last_sequence_number(dataset.id, TABLE) == 10
    for seq in (10, 9, -1):
        dup = storage.insert_rows(dataset.id, TABLE, rows(2), received_at=2.0, sequence_number=seq)
        assert dup == InsertResult(0, True, 2, last_sequence=10)
    assert storage.last_sequence_number(dataset.id, TABLE) == 10
    # Sequence numbers are per table.
    other = storage.insert_rows(dataset.id, "Other", rows(1), received_at=2.0, sequence_number=1)
    assert other.stored == 1
    nxt = storage.insert_rows(dataset.id, TABLE, rows(1), received_at=3.0, sequence_number=11)
    assert nxt.stored == 1 and nxt.row_count == 3
    assert storage.last_sequence_number(dataset.id, TABLE) == 11
    # Without a number, rows are always stored and the last number stays.
    storage.insert_rows(dataset.id, TABLE, rows(1), received_at=4.0)
    assert storage.last_sequence_number(dataset.id, TABLE) == 11
    assert storage.count_rows(dataset.id, TABLE) == 4


def test_fifo_trims_oldest_down_to_keep(storage: Storage, dataset: Dataset) -> None:
    fifo = (5, 8)
    for i in range(8):
        result = storage.insert_rows(dataset.id, TABLE, rows(1, i), received_at=1.0, fifo=fifo)
        assert result.row_count == i + 1
    result = storage.insert_rows(dataset.id, TABLE, rows(1, 8), received_at=1.0, fifo=fifo)
    assert result.row_count == 5 and result.stored == 1
    assert temps(storage.read_rows(dataset.id, TABLE)) == [4, 5, 6, 7, 8]
    assert storage.count_rows(dataset.id, TABLE) == 5
    # One batch bigger than high_water keeps only its newest `keep` rows.
    result = storage.insert_rows(dataset.id, TABLE, rows(20, 100), received_at=2.0, fifo=fifo)
    assert result.row_count == 5
    assert temps(storage.read_rows(dataset.id, TABLE)) == [115, 116, 117, 118, 119]


def test_delete_rows_before_updates_counts(storage: Storage, dataset: Dataset) -> None:
    storage.insert_rows(dataset.id, TABLE, rows(3), received_at=100.0)
    storage.insert_rows(dataset.id, "Other", rows(2), received_at=100.0)
    storage.insert_rows(dataset.id, TABLE, rows(4, 3), received_at=200.0)
    other_ds = make_dataset()
    storage.create_dataset(other_ds)
    storage.insert_rows(other_ds.id, TABLE, rows(1), received_at=50.0)
    assert storage.delete_rows_before(dataset.id, 150.0) == 5
    assert storage.count_rows(dataset.id, TABLE) == 4
    assert storage.count_rows(dataset.id, "Other") == 0
    assert temps(storage.read_rows(dataset.id)) == [3, 4, 5, 6]
    assert storage.count_rows(other_ds.id, TABLE) == 1
    assert storage.delete_rows_before(dataset.id, 150.0) == 0


def test_unicode_and_nul_round_trip(storage: Storage, dataset: Dataset) -> None:
    odd = [
        {"label": "nul\u0000inside", "temp": 1.5},
        {"label": "emoji 🚀 ünïcödé 中文 \u202e rtl", "temp": -0.0},
        {"label": "<img src=x onerror=alert(1)>\n\t\"'\\", "temp": None},
        {"label": "\ud7ff\ue000\U0010ffff", "big": 2**62, "flag": True},
    ]
    storage.insert_rows(dataset.id, TABLE, odd, received_at=1.0)
    assert [r.data for r in storage.read_rows(dataset.id, TABLE)] == odd


# --- dashboards and meta -----------------------------------------------------------
def test_dashboards_crud(storage: Storage) -> None:
    tiles = [{"type": "card", "field": "temp", "label": "<b>é</b>"}]
    first = Dashboard("d1", "Plant", tiles, created_at=1.0, updated_at=1.0)
    second = Dashboard("d2", "Office", [], created_at=2.0, updated_at=2.0)
    storage.save_dashboard(second)
    storage.save_dashboard(first)
    assert storage.get_dashboard("d1") == first
    assert [d.id for d in storage.list_dashboards()] == ["d1", "d2"]
    storage.save_dashboard(Dashboard("d1", "Plant 2", [], created_at=9.0, updated_at=5.0))
    got = storage.get_dashboard("d1")
    assert got == Dashboard("d1", "Plant 2", [], created_at=1.0, updated_at=5.0)
    assert storage.delete_dashboard("d1") is True
    assert storage.delete_dashboard("d1") is False
    assert storage.get_dashboard("d1") is None
    assert [d.id for d in storage.list_dashboards()] == ["d2"]


def test_dashboard_times_default_to_now(storage: Storage) -> None:
    before = time.time()
    storage.save_dashboard(Dashboard("d", "D", []))
    got = storage.get_dashboard("d")
    assert got is not None and got.created_at >= before and got.updated_at >= before


def test_meta(storage: Storage) -> None:
    assert storage.get_meta("token") is None
    storage.set_meta("token", "abc")
    storage.set_meta("token", "def")
    storage.set_meta("other", "")
    assert storage.get_meta("token") == "def"
    assert storage.get_meta("other") == ""


# --- access grants (tokens and dashboard links) ------------------------------------
def _grant(gid: str, secret: str, **extra: Any) -> Grant:
    return Grant(gid, "token", "viewer", secret_hash(secret), name=gid, created_at=1.0, **extra)


def test_grants_round_trip_and_are_found_by_hash(storage: Storage) -> None:
    scoped = _grant("g1", "s1", datasets=("a", "b"), expires_at=99.5)
    link = Grant("g2", "link", "viewer", secret_hash("s2"), "Wall", None, "dash", 2.0)
    storage.save_grant(scoped)
    storage.save_grant(link)
    assert storage.get_grant("g1") == scoped
    assert storage.find_grant(secret_hash("s2")) == link
    assert storage.find_grant(secret_hash("nope")) is None
    assert storage.get_grant("nope") is None
    assert [g.id for g in storage.list_grants()] == ["g1", "g2"]


def test_a_grant_secret_hash_is_unique(storage: Storage) -> None:
    storage.save_grant(_grant("g1", "same"))
    with pytest.raises(Exception):  # noqa: B017 (each backend raises its own IntegrityError)
        storage.save_grant(_grant("g2", "same"))
    assert [g.id for g in storage.list_grants()] == ["g1"]


def test_revoke_and_touch_grant(storage: Storage) -> None:
    storage.save_grant(_grant("g1", "s1"))
    storage.touch_grant("g1", 50.0)
    assert storage.revoke_grant("g1", 60.0) is True
    assert storage.revoke_grant("g1", 70.0) is False  # already revoked: the first time stays
    assert storage.revoke_grant("nope", 70.0) is False
    got = storage.get_grant("g1")
    assert got is not None and got.revoked_at == 60.0 and got.last_used_at == 50.0


def test_size_bytes_is_positive(storage: Storage, dataset: Dataset) -> None:
    storage.insert_rows(dataset.id, TABLE, rows(100), received_at=1.0)
    assert storage.size_bytes() > 0


def test_is_a_storage(storage: Storage) -> None:
    assert isinstance(storage, Storage)


# --- concurrency -------------------------------------------------------------------
def test_concurrent_inserts_lose_nothing(storage: Storage, dataset: Dataset) -> None:
    threads, batches, per_batch = 4, 10, 25
    errors: list[BaseException] = []
    results: list[InsertResult] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        try:
            for b in range(batches):
                table = TABLE if worker % 2 == 0 else "Other"
                start = (worker * batches + b) * per_batch
                res = storage.insert_rows(
                    dataset.id, table, rows(per_batch, start), received_at=1.0
                )
                # Reads run alongside the writes.
                storage.read_rows(dataset.id, table, newest_first=True, limit=5)
                with lock:
                    results.append(res)
        except BaseException as exc:
            errors.append(exc)

    pool = [threading.Thread(target=work, args=(w,)) for w in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=60)
    assert not errors
    total = threads * batches * per_batch
    stored = storage.read_rows(dataset.id, limit=total + 10)
    assert len(stored) == total
    assert len({r.id for r in stored}) == total
    assert sorted(temps(stored)) == [float(i) for i in range(total)]
    assert storage.count_rows(dataset.id, TABLE) + storage.count_rows(dataset.id, "Other") == total
    # Each batch's ids are its own: no two batches share an id.
    spans = sorted((r.first_id, r.last_id) for r in results)
    for (_, prev_last), (next_first, _) in itertools.pairwise(spans):
        assert prev_last is not None and next_first is not None and next_first > prev_last


def test_a_cursor_follower_sees_every_row(storage: Storage, dataset: Dataset) -> None:
    """The live feed's pattern: read every table after the last id seen, while writes land."""
    writers, batches, per_batch = 3, 15, 10
    total = writers * batches * per_batch

    def write(worker: int) -> None:
        for b in range(batches):
            start = (worker * batches + b) * per_batch
            table = ("A", "B", "C")[(worker + b) % 3]
            storage.insert_rows(dataset.id, table, rows(per_batch, start), received_at=1.0)

    seen = follow_while_writing(
        write,
        lambda cursor: storage.read_rows(dataset.id, after_id=cursor, limit=40),
        lambda row: row.data["temp"],
        writers,
    )
    assert sorted(seen.values()) == [float(i) for i in range(total)]


def test_a_row_json_cannot_carry_is_refused_by_index(storage: Storage, dataset: Dataset) -> None:
    bad = [{"label": "fine"}, {"label": "lone surrogate \ud800"}]
    with pytest.raises(ValueError, match="row 1 cannot be stored as JSON"):
        storage.insert_rows(dataset.id, TABLE, bad, received_at=1.0, sequence_number=1)
    assert storage.count_rows(dataset.id, TABLE) == 0
    assert storage.last_sequence_number(dataset.id, TABLE) is None


# Values as pbistream.values normalises them: text (any Unicode JSON can carry,
# NUL included), Int64, finite doubles, booleans, nulls.
_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63) + 1, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(blacklist_categories=["Cs"]), max_size=40),
)
_rows = st.lists(
    st.dictionaries(st.text(min_size=1, max_size=10), _values, max_size=6),
    min_size=1,
    max_size=5,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batch=_rows)
def test_any_normalised_row_round_trips(
    storage: Storage, dataset: Dataset, batch: list[dict[str, Any]]
) -> None:
    result = storage.insert_rows(dataset.id, TABLE, batch, received_at=1.0)
    assert result.first_id is not None
    back = storage.read_rows(dataset.id, TABLE, after_id=result.first_id - 1, limit=len(batch))
    assert [r.data for r in back] == batch


def test_a_duplicate_reports_the_number_that_beat_it(storage: Storage, dataset: Dataset) -> None:
    top = 2**63 - 1
    first = storage.insert_rows(dataset.id, TABLE, rows(1), received_at=1.0, sequence_number=top)
    assert (first.duplicate, first.last_sequence) == (False, top)
    dup = storage.insert_rows(dataset.id, TABLE, rows(2), received_at=2.0, sequence_number=3)
    assert (dup.duplicate, dup.stored, dup.last_sequence) == (True, 0, top)
    plain = storage.insert_rows(dataset.id, TABLE, rows(1), received_at=3.0)
    assert (plain.duplicate, plain.stored, plain.last_sequence) == (False, 1, None)


def test_delete_rows_forgets_the_tables_sequence_number(storage: Storage, dataset: Dataset) -> None:
    storage.insert_rows(dataset.id, TABLE, rows(1), received_at=1.0, sequence_number=50)
    storage.insert_rows(dataset.id, "Other", rows(1), received_at=1.0, sequence_number=50)
    storage.delete_rows(dataset.id, TABLE)
    assert storage.last_sequence_number(dataset.id, TABLE) is None
    assert storage.last_sequence_number(dataset.id, "Other") == 50  # other tables keep theirs
    again = storage.insert_rows(dataset.id, TABLE, rows(1), received_at=2.0, sequence_number=1)
    assert (again.duplicate, again.stored) == (False, 1)


# --- execute_plan: DAX plans run in the database (pbistream.dax) -----------------------------
def _typed_dataset(storage: Storage) -> Dataset:
    ds = Dataset(
        id=secrets.token_hex(8),
        name="Typed",
        mode=Mode.PUSH,
        retention=Retention.NONE,
        tables=[
            Table(
                "Sales",
                (
                    Column("Region", DataType.STRING),
                    Column("Amount", DataType.DOUBLE),
                    Column("Qty", DataType.INT64),
                    Column("Price", DataType.DECIMAL),
                    Column("Sold", DataType.DATETIME),
                    Column("Returned", DataType.BOOLEAN),
                ),
            )
        ],
        group_id=None,
        push_key=None,
        created_at=time.time(),
    )
    storage.create_dataset(ds)
    return ds


def _plan(text: str, ds: Dataset) -> Any:
    from pbistream.dax import plan_dax

    return plan_dax(text, ds.tables)[0]


def test_execute_plan_returns_typed_values_and_blanks(storage: Storage) -> None:
    ds = _typed_dataset(storage)
    storage.insert_rows(
        ds.id,
        "Sales",
        [
            {
                "Region": "East",
                "Amount": 1.5,
                "Qty": 2,
                "Price": 9.99,
                "Sold": "2026-01-02T03:04:05.000Z",
                "Returned": True,
            },
            {"Region": "West", "Qty": 7, "Returned": False, "Amount": None},
        ],
        received_at=1.0,
    )
    got = storage.execute_plan(
        ds.id, _plan("EVALUATE 'Sales' ORDER BY 'Sales'[Qty]", ds), max_rows=10
    )
    assert got == [
        ("East", 1.5, 2, 9.99, "2026-01-02T03:04:05", True),
        ("West", None, 7, None, None, False),
    ]
    assert [type(v) for v in got[0]] == [str, float, int, float, str, bool]


def test_execute_plan_aggregates_filters_and_stays_in_its_dataset(storage: Storage) -> None:
    ds = _typed_dataset(storage)
    other = _typed_dataset(storage)
    data = [{"Region": r, "Qty": q, "Amount": q / 2} for r, q in [("E", 1), ("E", 3), ("W", 5)]]
    storage.insert_rows(ds.id, "Sales", data, received_at=1.0)
    storage.insert_rows(other.id, "Sales", data * 3, received_at=1.0)
    query = (
        "EVALUATE SUMMARIZECOLUMNS('Sales'[Region], FILTER(Sales, Sales[Qty] > 1), "
        '"Total", SUM(Sales[Qty]), "Avg", AVERAGE(Sales[Amount]), "Rows", COUNTROWS(Sales)) '
        "ORDER BY 'Sales'[Region]"
    )
    assert storage.execute_plan(ds.id, _plan(query, ds), max_rows=10) == [
        ("E", 3, 1.5, 1),
        ("W", 5, 2.5, 1),
    ]


def test_execute_plan_stops_at_max_rows_in_order(storage: Storage) -> None:
    ds = _typed_dataset(storage)
    storage.insert_rows(ds.id, "Sales", [{"Qty": i} for i in range(20)], received_at=1.0)
    plan = _plan('EVALUATE SELECTCOLUMNS(Sales, "Q", Sales[Qty]) ORDER BY [Q] DESC', ds)
    assert storage.execute_plan(ds.id, plan, max_rows=3) == [(19,), (18,), (17,)]


def test_execute_plan_overflow_is_a_query_error(storage: Storage) -> None:
    from pbistream.storage.base import QueryError

    ds = _typed_dataset(storage)
    storage.insert_rows(
        ds.id, "Sales", [{"Qty": 2**62}, {"Qty": 2**62}, {"Qty": 2**62}], received_at=1.0
    )
    with pytest.raises(QueryError, match="could not compute"):
        storage.execute_plan(ds.id, _plan('EVALUATE ROW("S", SUM(Sales[Qty]))', ds), max_rows=10)


def test_execute_plan_follows_inserts_deletes_trims_and_redefinitions(storage: Storage) -> None:
    """Queries read a typed copy kept up to date at query time; it must never go stale."""
    ds = _typed_dataset(storage)
    query = _plan('EVALUATE ROW("n", COUNTROWS(Sales), "s", SUM(Sales[Qty]))', ds)

    def answer() -> list[tuple[Any, ...]]:
        return storage.execute_plan(ds.id, query, max_rows=10)

    def truth() -> list[tuple[Any, ...]]:
        stored = storage.read_rows(ds.id, "Sales", limit=10_000)
        qty = [r.data["Qty"] for r in stored if r.data.get("Qty") is not None]
        return [(len(stored) or None, sum(qty) if qty else None)]

    assert answer() == [(None, None)]
    storage.insert_rows(ds.id, "Sales", [{"Qty": i} for i in range(10)], received_at=1.0)
    assert answer() == truth() == [(10, 45)]
    storage.insert_rows(ds.id, "Sales", [{"Qty": 100}], received_at=2.0)
    assert answer() == truth() == [(11, 145)]
    # A FIFO trim deletes the oldest rows.
    storage.insert_rows(ds.id, "Sales", [{"Qty": 1}] * 5, received_at=3.0, fifo=(8, 12))
    assert answer() == truth()
    # The streaming cache deletes by arrival time.
    storage.delete_rows_before(ds.id, 2.5)
    assert answer() == truth() == [(5, 5)]
    storage.delete_rows(ds.id, "Sales")
    assert answer() == [(None, None)]
    storage.insert_rows(ds.id, "Sales", [{"Qty": 7}], received_at=4.0)
    assert answer() == truth() == [(1, 7)]
    # A redefined table (Qty becomes Double) gets a new copy with the new type.
    redefined = Table(
        "Sales",
        tuple(
            c if c.name != "Qty" else Column("Qty", DataType.DOUBLE) for c in ds.tables[0].columns
        ),
    )
    storage.replace_table(ds.id, redefined)
    storage.insert_rows(ds.id, "Sales", [{"Qty": 0.5}], received_at=5.0)
    ds = storage.get_dataset(ds.id) or ds
    query = _plan('EVALUATE ROW("n", COUNTROWS(Sales), "s", SUM(Sales[Qty]))', ds)
    assert answer() == [(2, 7.5)]
    # Another dataset's rows never show.
    other = _typed_dataset(storage)
    storage.insert_rows(other.id, "Sales", [{"Qty": 1000}], received_at=1.0)
    assert answer() == [(2, 7.5)]
    storage.delete_dataset(other.id)
    assert answer() == [(2, 7.5)]


def test_execute_plan_while_writers_insert_ends_exact(storage: Storage) -> None:
    """Queries keep the typed copy in step with rows committed meanwhile by a writer."""
    ds = _typed_dataset(storage)
    query = _plan('EVALUATE ROW("n", COUNTROWS(Sales), "s", SUM(Sales[Qty]))', ds)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            for batch in range(20):
                rows = [{"Qty": batch * 100 + i} for i in range(50)]
                storage.insert_rows(ds.id, "Sales", rows, received_at=float(batch))
        except BaseException as exc:  # reported below
            failures.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    seen: list[int] = []
    while writer.is_alive():
        got = storage.execute_plan(ds.id, query, max_rows=10)
        seen.append(got[0][0] or 0)
    writer.join()
    assert not failures
    assert seen == sorted(seen)  # a query never sees fewer rows than an earlier one
    total = sum(b * 100 + i for b in range(20) for i in range(50))
    assert storage.execute_plan(ds.id, query, max_rows=10) == [(1000, total)]


def test_execute_plan_runs_deeply_nested_tables(storage: Storage) -> None:
    """Forty nested FILTERs or TOPNs: SQLite's parser stack allows ~10 nested subqueries."""
    ds = _typed_dataset(storage)
    storage.insert_rows(ds.id, "Sales", [{"Qty": i} for i in range(5)], received_at=1.0)
    filters = "EVALUATE " + "FILTER(" * 40 + "Sales" + ", Sales[Qty] > 0)" * 40
    assert len(storage.execute_plan(ds.id, _plan(filters, ds), max_rows=10)) == 4
    tops = "EVALUATE " + "TOPN(3, " * 40 + "Sales" + ", Sales[Qty])" * 40
    got = storage.execute_plan(ds.id, _plan(tops + " ORDER BY Sales[Qty]", ds), max_rows=10)
    assert [row[2] for row in got] == [2, 3, 4]
