"""The REST push-dataset API: every case of reference §6.1-§6.3 that has an expected answer."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from pbistream.testing import RunningServer

PBI = "/v1.0/myorg"
ODATA_JSON = "application/json; odata.metadata=minimal; odata.streaming=true"

SALES = {
    "name": "SalesMarketing",
    "defaultMode": "Push",
    "tables": [
        {
            "name": "Product",
            "columns": [
                {"name": "ProductID", "dataType": "Int64"},
                {"name": "Name", "dataType": "string"},
                {"name": "IsCompete", "dataType": "bool"},
                {"name": "ManufacturedOn", "dataType": "DateTime"},
            ],
        }
    ],
}
ROW = {"ProductID": 1, "Name": "Adjustable Race", "IsCompete": True, "ManufacturedOn": "07/30/2014"}


def create(api: httpx.Client, body: Any = None, root: str = PBI, **params: str) -> httpx.Response:
    return api.post(f"{root}/datasets", json=SALES if body is None else body, params=params)


def created_id(api: httpx.Client, body: Any = None, root: str = PBI, **params: str) -> str:
    response = create(api, body, root, **params)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored(server: RunningServer, dataset_id: str, table: str = "Product") -> list[dict[str, Any]]:
    return [r.data for r in server.storage.read_rows(dataset_id, table, limit=100_000)]


def with_columns(columns: list[dict[str, Any]], mode: str = "Push") -> dict[str, Any]:
    return {"name": "d", "defaultMode": mode, "tables": [{"name": "T", "columns": columns}]}


# --- 6.1 create / read datasets -------------------------------------------------------


def test_1_create_with_basic_fifo(api: httpx.Client) -> None:
    response = create(api, defaultRetentionPolicy="basicFIFO")
    assert response.status_code == 201
    assert response.headers["content-type"] == ODATA_JSON
    body = response.json()
    assert body["@odata.context"].endswith("/v1.0/myorg/$metadata#datasets/$entity")
    assert uuid.UUID(body["id"])
    assert body["name"] == "SalesMarketing"
    assert body["defaultRetentionPolicy"] == "basicFIFO"


def test_2_defaults_are_push_and_retention_none(api: httpx.Client) -> None:
    body = {k: v for k, v in SALES.items() if k != "defaultMode"}
    response = create(api, body)
    assert response.status_code == 201
    assert response.json()["defaultRetentionPolicy"] == "None"
    got = api.get(f"{PBI}/datasets/{response.json()['id']}").json()
    assert got["defaultMode"] == "Push"
    assert got["defaultRetentionPolicy"] == "None"


def test_3_group_datasets_are_seen_only_in_their_group(api: httpx.Client) -> None:
    group = str(uuid.uuid4())
    other = str(uuid.uuid4())
    dataset_id = created_id(api, root=f"{PBI}/groups/{group}")
    in_group = api.get(f"{PBI}/groups/{group}/datasets").json()["value"]
    assert [d["id"] for d in in_group] == [dataset_id]
    assert api.get(f"{PBI}/datasets").json()["value"] == []
    assert api.get(f"{PBI}/groups/{other}/datasets").json()["value"] == []
    assert api.get(f"{PBI}/datasets/{dataset_id}").status_code == 404
    assert api.get(f"{PBI}/groups/{other}/datasets/{dataset_id}").status_code == 404
    # Group ids are GUIDs: case does not matter.
    assert api.get(f"{PBI}/groups/{group.upper()}/datasets/{dataset_id}").status_code == 200


@pytest.mark.parametrize("missing", ["tables", "name"])
def test_4_missing_required_property_is_400(api: httpx.Client, missing: str) -> None:
    body = {k: v for k, v in SALES.items() if k != missing}
    response = create(api, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"
    assert repr(missing) in response.json()["error"]["message"]


def test_5_unknown_property_is_bad_request_with_target_dataset(api: httpx.Client) -> None:
    response = create(api, {**SALES, "compatibilityLevel": 1500})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BadRequest"
    assert error["details"][0]["target"] == "dataset"
    assert "'compatibilityLevel' does not exist" in error["details"][0]["message"]


def test_6_wrongly_cased_datatype_property_is_400(api: httpx.Client) -> None:
    response = create(api, with_columns([{"name": "a", "datatype": "Int64"}]))
    assert response.status_code == 400
    assert "'datatype' does not exist" in response.json()["error"]["details"][0]["message"]


def test_7_unknown_data_type_is_400(api: httpx.Client) -> None:
    response = create(api, with_columns([{"name": "a", "dataType": "Whatever"}]))
    assert response.status_code == 400
    assert "Whatever" in response.json()["error"]["message"]


def test_8_data_type_names_are_case_insensitive_with_bool_alias(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    names = ["int64", "BOOLEAN", "bool", "datetime", "Double", "Decimal", "String"]
    columns = [{"name": f"c{i}", "dataType": n} for i, n in enumerate(names)]
    dataset_id = created_id(api, with_columns(columns))
    table = pbistream_server.storage.get_dataset(dataset_id).tables[0]  # type: ignore[union-attr]
    assert [c.data_type.value for c in table.columns] == [
        "Int64",
        "Boolean",
        "Boolean",
        "DateTime",
        "Double",
        "Decimal",
        "String",
    ]


@pytest.mark.parametrize("mode", ["PushStreaming", "Streaming", "pushStreaming"])
def test_9_streaming_modes_refuse_column_properties(api: httpx.Client, mode: str) -> None:
    column = {"name": "a", "dataType": "Double", "formatString": "0.00"}
    response = create(api, with_columns([column], mode))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequest"
    assert "does not support column properties other than name and dataType" in error["message"]


def test_9b_push_accepts_column_properties_measures_relationships(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    body = {
        "name": "Model",
        "tables": [
            {
                "name": "Product",
                "columns": [
                    {"name": "ProductID", "dataType": "Int64", "isHidden": True},
                    {
                        "name": "Price",
                        "dataType": "Decimal",
                        "formatString": "$#,0.00",
                        "summarizeBy": "sum",
                        "dataCategory": "Currency",
                    },
                    {"name": "Label", "dataType": "string", "sortByColumn": "ProductID"},
                ],
                "measures": [{"name": "Total", "expression": "SUM(Product[Price])"}],
            },
            {"name": "Sales", "columns": [{"name": "ProductID", "dataType": "Int64"}]},
        ],
        "relationships": [
            {
                "name": "r1",
                "fromTable": "Sales",
                "fromColumn": "ProductID",
                "toTable": "Product",
                "toColumn": "ProductID",
                "crossFilteringBehavior": "BothDirections",
            }
        ],
    }
    dataset_id = created_id(api, body)
    dataset = pbistream_server.storage.get_dataset(dataset_id)
    assert dataset is not None
    assert dataset.tables[0].columns[1].properties["formatString"] == "$#,0.00"
    assert dataset.tables[0].properties["measures"][0]["name"] == "Total"
    assert dataset.properties["relationships"][0]["name"] == "r1"


def test_9c_relationship_to_a_missing_table_is_400(api: httpx.Client) -> None:
    body = {
        **with_columns([{"name": "a", "dataType": "Int64"}]),
        "relationships": [
            {"name": "r", "fromTable": "T", "fromColumn": "a", "toTable": "X", "toColumn": "a"}
        ],
    }
    response = create(api, body)
    assert response.status_code == 400
    assert "'X' is not a table" in response.json()["error"]["message"]


def test_10_more_than_75_tables_or_columns_is_400(api: httpx.Client) -> None:
    column = [{"name": "a", "dataType": "Int64"}]
    tables = [{"name": f"t{i}", "columns": column} for i in range(76)]
    response = create(api, {"name": "d", "tables": tables})
    assert response.status_code == 400
    assert "at most 75" in response.json()["error"]["message"]
    columns = [{"name": f"c{i}", "dataType": "Int64"} for i in range(76)]
    response = create(api, with_columns(columns))
    assert response.status_code == 400
    assert "at most 75" in response.json()["error"]["message"]
    # 75 of each is fine.
    assert create(api, {"name": "d", "tables": tables[:75]}).status_code == 201
    assert create(api, with_columns(columns[:75])).status_code == 201


@pytest.mark.parametrize("name", ["a.b", "a/b", "", "x" * 101, "a(b)", "a'b", "a:b"])
def test_11_table_name_outside_the_pattern_is_400(api: httpx.Client, name: str) -> None:
    body = {"name": "d", "tables": [{"name": name, "columns": []}]}
    assert create(api, body).status_code == 400


@pytest.mark.parametrize("name", ["Product", "a b-c#d@e^f_g~h", "Zeitreihe ö", "x" * 100])
def test_11b_table_names_inside_the_pattern_are_accepted(api: httpx.Client, name: str) -> None:
    body = {"name": "d", "tables": [{"name": name, "columns": []}]}
    assert create(api, body).status_code == 201


def test_12_retention_policy_is_case_insensitive(api: httpx.Client) -> None:
    response = create(api, defaultRetentionPolicy="basicFifo")
    assert response.status_code == 201
    assert response.json()["defaultRetentionPolicy"] == "basicFIFO"
    assert create(api, defaultRetentionPolicy="forever").status_code == 400


def test_13_list_datasets(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    response = api.get(f"{PBI}/datasets")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#datasets")
    assert [(d["id"], d["addRowsAPIEnabled"]) for d in body["value"]] == [(dataset_id, True)]


def test_14_unknown_dataset_is_404_entity_not_found(api: httpx.Client) -> None:
    response = api.get(f"{PBI}/datasets/{uuid.uuid4()}")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "PowerBIEntityNotFound"


def test_16_deprecation_mode_refuses_streaming_creation(server_factory: Any) -> None:
    server = server_factory(deprecation=True)
    with server.client() as api:
        response = create(api, with_columns([{"name": "a", "dataType": "Double"}], "Streaming"))
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "FeatureDeprecatedError"
        codes = [d["code"] for d in error["pbi.error"]["details"]]
        assert codes == ["LearnMoreLink", "FeatureDeprecatedMessage"]
        assert create(api).status_code == 201  # Push creation still works


# --- 6.2 tables ---------------------------------------------------------------------


def test_17_get_tables(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    response = api.get(f"{PBI}/datasets/{dataset_id}/tables")
    assert response.status_code == 200
    body = response.json()
    assert body["@odata.context"].endswith("$metadata#tables")
    assert body["value"] == [{"name": "Product"}]
    expanded = api.get(f"{PBI}/datasets/{dataset_id}/tables", params={"$expand": "columns"})
    assert expanded.json()["value"][0]["columns"][0]["name"] == "ProductID"


def test_19_put_table_adds_a_column_that_rows_may_then_use(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    dataset_id = created_id(api)
    table = SALES["tables"][0]  # type: ignore[index]
    new = {
        "name": "Product",
        "columns": [*table["columns"], {"name": "NewColumn", "dataType": "string"}],
    }
    response = api.put(f"{PBI}/datasets/{dataset_id}/tables/Product", json=new)
    assert response.status_code == 200
    assert response.json() == {"name": "Product"}
    rows = api.post(
        f"{PBI}/datasets/{dataset_id}/tables/Product/rows",
        json={"rows": [{**ROW, "NewColumn": "hello"}]},
    )
    assert rows.status_code == 200
    assert stored(pbistream_server, dataset_id)[0]["NewColumn"] == "hello"


def test_20_put_table_with_another_name_is_400(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    body = {"name": "Other", "columns": [{"name": "a", "dataType": "Int64"}]}
    response = api.put(f"{PBI}/datasets/{dataset_id}/tables/Product", json=body)
    assert response.status_code == 400
    assert "does not match" in response.json()["error"]["message"]


# --- 6.3 rows -----------------------------------------------------------------------


def test_21_post_rows_official_example(api: httpx.Client, pbistream_server: RunningServer) -> None:
    dataset_id = created_id(api)
    response = api.post(f"{PBI}/datasets/{dataset_id}/tables/Product/rows", json={"rows": [ROW]})
    assert response.status_code == 200
    assert response.content == b""
    assert stored(pbistream_server, dataset_id) == [
        {
            "ProductID": 1,
            "Name": "Adjustable Race",
            "IsCompete": True,
            "ManufacturedOn": "2014-07-30T00:00:00.000Z",
        }
    ]


def test_21b_bare_array_body_is_accepted_on_v1(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    dataset_id = created_id(api)
    response = api.post(f"{PBI}/datasets/{dataset_id}/tables/Product/rows", json=[ROW, ROW])
    assert response.status_code == 200
    assert len(stored(pbistream_server, dataset_id)) == 2


def test_22_post_rows_in_group(api: httpx.Client, pbistream_server: RunningServer) -> None:
    group = str(uuid.uuid4())
    dataset_id = created_id(api, root=f"{PBI}/groups/{group}")
    url = f"{PBI}/groups/{group}/datasets/{dataset_id}/tables/Product/rows"
    assert api.post(url, json={"rows": [ROW]}).status_code == 200
    assert len(stored(pbistream_server, dataset_id)) == 1


def test_23_table_names_are_case_sensitive(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    response = api.post(f"{PBI}/datasets/{dataset_id}/tables/product/rows", json={"rows": [ROW]})
    assert response.status_code == 404


def test_29_string_of_4001_characters_is_400(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    assert api.post(url, json={"rows": [{"Name": "x" * 4000}]}).status_code == 200
    response = api.post(url, json={"rows": [{"Name": "x" * 4001}]})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Row 0, column 'Name': text of 4,001")


def test_32_datetime_formats_are_stored_as_utc_quantised(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    dataset_id = created_id(api)
    values = ["2023-04-24T09:35:26.740Z", "2024-01-01", "07/30/2014", "8/19/2016 9:24:40 PM"]
    values.append("2024-01-01T10:00:00.001+02:00")
    rows = [{"ManufacturedOn": v} for v in values]
    response = api.post(f"{PBI}/datasets/{dataset_id}/tables/Product/rows", json={"rows": rows})
    assert response.status_code == 200
    assert [r["ManufacturedOn"] for r in stored(pbistream_server, dataset_id)] == [
        "2023-04-24T09:35:26.740Z",
        "2024-01-01T00:00:00.000Z",
        "2014-07-30T00:00:00.000Z",
        "2016-08-19T21:24:40.000Z",
        "2024-01-01T08:00:00.000Z",
    ]


# Text holding a whole number ("1") is converted, as Power BI does (test_fidelity_bodies.py);
# text that holds none is still refused.
@pytest.mark.parametrize(
    "value", [9223372036854775807, -9223372036854775808, 2**70, 1.5, "one", "1.5"]
)
def test_33_int64_out_of_range_or_wrong_type_is_400(api: httpx.Client, value: Any) -> None:
    dataset_id = created_id(api)
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    response = api.post(url, json={"rows": [{"ProductID": value}]})
    assert response.status_code == 400
    assert "column 'ProductID'" in response.json()["error"]["message"]


def test_34_unknown_column_on_v1_is_400_invalid_request(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    response = api.post(url, json={"rows": [ROW, {**ROW, "Colour": "red"}]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "InvalidRequest"
    assert error["message"].startswith("Row 1, column 'Colour'")


def test_34b_unknown_property_next_to_rows_is_400(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    response = api.post(url, json={"rows": [ROW], "row": []})
    assert response.status_code == 400
    assert "'row' does not exist" in response.json()["error"]["details"][0]["message"]


def test_35_sequence_number_makes_a_retry_a_no_op(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    dataset_id = created_id(api)
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    header = "X-PowerBI-PushData-SequenceNumber"
    assert api.post(url, json={"rows": [ROW]}, headers={header: "1"}).status_code == 200
    assert api.post(url, json={"rows": [ROW]}, headers={header: "1"}).status_code == 200
    assert api.post(url, json={"rows": [ROW]}, headers={header: "0"}).status_code == 200
    assert len(stored(pbistream_server, dataset_id)) == 1
    assert api.post(url, json={"rows": [ROW, ROW]}, headers={header: "2"}).status_code == 200
    assert len(stored(pbistream_server, dataset_id)) == 3
    assert pbistream_server.storage.last_sequence_number(dataset_id, "Product") == 2
    bad = api.post(url, json={"rows": [ROW]}, headers={header: "two"})
    assert bad.status_code == 400


def test_35b_sequence_number_on_the_push_url(pbistream_server: RunningServer) -> None:
    url = pbistream_server.create_streaming_dataset({"value": "Number"}, historic=True)
    header = {"X-PowerBI-PushData-SequenceNumber": "7"}
    for _ in range(3):
        assert httpx.post(url, json=[{"value": 1}], headers=header).status_code == 200
    assert pbistream_server.count_rows() == 1


def test_36_delete_rows(api: httpx.Client, pbistream_server: RunningServer) -> None:
    dataset_id = created_id(api)
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    assert api.post(url, json={"rows": [ROW, ROW]}).status_code == 200
    response = api.delete(url)
    assert response.status_code == 200
    assert stored(pbistream_server, dataset_id) == []
    assert api.post(url, json={"rows": [ROW]}).status_code == 200
    assert len(stored(pbistream_server, dataset_id)) == 1


def test_37_delete_rows_of_a_streaming_dataset_is_refused(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    created = pbistream_server.create_dataset({"value": "Number"}, mode="Streaming")
    assert httpx.post(created["push_url"], json=[{"value": 1}]).status_code == 200
    response = api.delete(f"{PBI}/datasets/{created['id']}/tables/RealTimeData/rows")
    assert response.status_code == 400
    assert "60 minutes" in response.json()["error"]["message"]
    assert pbistream_server.count_rows() == 1


def test_38_delete_dataset(api: httpx.Client, pbistream_server: RunningServer) -> None:
    dataset_id = created_id(api)
    assert (
        api.post(f"{PBI}/datasets/{dataset_id}/tables/Product/rows", json=[ROW]).status_code == 200
    )
    response = api.delete(f"{PBI}/datasets/{dataset_id}")
    assert response.status_code == 200
    assert api.get(f"{PBI}/datasets/{dataset_id}").status_code == 404
    assert api.delete(f"{PBI}/datasets/{dataset_id}").status_code == 404


# --- cross-cutting ------------------------------------------------------------------


def test_beta_myorg_routes_work_too(api: httpx.Client) -> None:
    response = create(api, root="/beta/myorg", defaultRetentionPolicy="basicFIFO")
    assert response.status_code == 201
    assert response.json()["@odata.context"].endswith("/beta/myorg/$metadata#datasets/$entity")
    assert len(api.get("/beta/myorg/datasets").json()["value"]) == 1


def test_duplicate_slashes_are_collapsed(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    dataset_id = created_id(api)
    # A full URL: httpx would read a leading "//" relative to base_url as a host.
    url = f"{pbistream_server.url}//v1.0//myorg/datasets/{dataset_id}//tables/Product/rows"
    response = api.post(url, json=[ROW])
    assert response.status_code == 200
    assert api.get(f"/v1.0/myorg//datasets/{dataset_id}").status_code == 200


def test_a_trailing_slash_is_accepted(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    response = api.post(f"{PBI}/datasets/{dataset_id}/tables/Product/rows/", json=[ROW])
    assert response.status_code == 200
    assert api.get(f"{PBI}/datasets/").status_code == 200
    assert api.post(f"{PBI}/datasets/", json=SALES).status_code == 201


def test_bodies_and_form_content_types_on_get_and_delete_are_ignored(api: httpx.Client) -> None:
    dataset_id = created_id(api)
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    got = api.request("GET", f"{PBI}/datasets/{dataset_id}", content=b"a=1&b=2", headers=form)
    assert got.status_code == 200
    got = api.request("GET", f"{PBI}/datasets", content=b"{not json")
    assert got.status_code == 200
    url = f"{PBI}/datasets/{dataset_id}/tables/Product/rows"
    deleted = api.request("DELETE", url, content=b"garbage", headers=form)
    assert deleted.status_code == 200
    deleted = api.request("DELETE", f"{PBI}/datasets/{dataset_id}", json={"x": 1})
    assert deleted.status_code == 200


def test_every_response_carries_a_request_id(api: httpx.Client) -> None:
    ids = {
        api.get(f"{PBI}/datasets").headers["RequestId"],
        api.get(f"{PBI}/datasets/{uuid.uuid4()}").headers["RequestId"],
        httpx.get(f"{str(api.base_url).rstrip('/')}/v1.0/myorg/datasets").headers["RequestId"],
    }
    assert len(ids) == 3
    assert all(uuid.UUID(i) for i in ids)


def test_rows_inside_table_definitions_are_stored(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    table = {**SALES["tables"][0], "rows": [ROW, {**ROW, "ProductID": 2}]}  # type: ignore[index]
    dataset_id = created_id(api, {**SALES, "tables": [table]})
    assert [r["ProductID"] for r in stored(pbistream_server, dataset_id)] == [1, 2]
    bad = {**table, "rows": [{**ROW, "ProductID": "one"}]}
    response = create(api, {**SALES, "tables": [bad]})
    assert response.status_code == 400
    assert response.json()["error"]["message"].startswith("Row 0, column 'ProductID'")
    assert len(api.get(f"{PBI}/datasets").json()["value"]) == 1  # nothing was created
    put = {**table, "rows": [{**ROW, "ProductID": 3}]}
    assert api.put(f"{PBI}/datasets/{dataset_id}/tables/Product", json=put).status_code == 200
    assert [r["ProductID"] for r in stored(pbistream_server, dataset_id)] == [1, 2, 3]


def test_unset_properties_sent_as_null_or_empty_by_client_libraries(api: httpx.Client) -> None:
    # The shape python-power-bi and similar libraries send: every property, unset ones empty.
    body = {
        "name": "LibraryStyle",
        "defaultMode": "",
        "datasources": "",
        "relationships": "",
        "tables": [
            {
                "name": "T",
                "columns": [{"name": "a", "dataType": "Int64", "formatString": None}],
                "measures": [],
                "rows": [],
            }
        ],
    }
    dataset_id = created_id(api, body)
    assert api.get(f"{PBI}/datasets/{dataset_id}").json()["defaultMode"] == "Push"
    streaming = {**body, "defaultMode": "Streaming"}
    assert create(api, streaming).status_code == 201  # a null formatString is not a property


def test_pypowerbi_style_double_slash_urls(
    api: httpx.Client, pbistream_server: RunningServer
) -> None:
    # pypowerbi builds f"{base}/v1.0/myorg{'/'}/datasets" for My workspace.
    base = f"{pbistream_server.url}/v1.0/myorg/"
    response = api.post(f"{base}/datasets", json=SALES)
    assert response.status_code == 201
    dataset_id = response.json()["id"]
    url = f"{base}/datasets/{dataset_id}/tables/Product/rows"
    assert api.post(url, json={"rows": [ROW]}).status_code == 200
    assert api.get(f"{base}/datasets/{dataset_id}/tables").json()["value"] == [{"name": "Product"}]


def test_public_url_is_used_in_odata_context_and_push_urls(server_factory: Any) -> None:
    server = server_factory(public_url="https://pbi.example.test/")
    with server.client() as api:
        response = create(api, with_columns([{"name": "v", "dataType": "Double"}], "Streaming"))
        assert response.json()["@odata.context"].startswith("https://pbi.example.test/v1.0/myorg/")
        details = api.get(f"/api/datasets/{response.json()['id']}").json()
    assert details["pushUrl"].startswith("https://pbi.example.test/beta/")
