"""Update Dataset (``PATCH .../datasets/{id}``) and Get Datasources (``GET .../datasources``).

Update Dataset changes two settings, both about Premium storage: ``targetStorageMode``
(``Abf`` small or ``PremiumFiles`` large semantic model format) and
``queryScaleOutSettings`` (read-only replicas). pbistream has one storage and no
replicas to scale queries out to, so a valid body is answered 200, as Power BI
answers it, and changes nothing; a body Power BI would refuse (an unknown property,
a value outside the documented ones) is refused with the same words.

Get Datasources lists a dataset's data sources. A push dataset has none: the create
request's ``datasources`` "isn't applicable for Push datasets" (reference §1.3), so
the list holds what the create request carried, if anything, else nothing.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pbistream.server.errors import BadRequest, PbiJSONResponse
from pbistream.server.rest import _base, _dataset, _json_body

__all__ = ["routes_under"]

_TYPE = "Microsoft.PowerBI.ServiceContracts.Api.UpdateDatasetRequest"
_STORAGE_MODES = {"abf": "Abf", "premiumfiles": "PremiumFiles"}
_SCALE_OUT_PROPS = {"autoSyncReadOnlyReplicas", "maxReadOnlyReplicas"}


def _unknown(name: str, type_name: str) -> BadRequest:
    return BadRequest(
        "Bad Request",
        details=[
            {
                "message": f"The property '{name}' does not exist on type '{type_name}'. "
                "Make sure to only use property names that are defined by the type.",
                "target": "updateDatasetRequest",
            }
        ],
    )


def check_update(body: Any) -> None:
    """Check an UpdateDatasetRequest as Power BI's contract defines it.

    Raises:
        ApiError: 400 naming the property and the rule.
    """
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object: an UpdateDatasetRequest.")
    for name in sorted(set(body) - {"targetStorageMode", "queryScaleOutSettings"}):
        raise _unknown(name, _TYPE)
    mode = body.get("targetStorageMode")
    if mode is not None and (not isinstance(mode, str) or mode.lower() not in _STORAGE_MODES):
        raise BadRequest(f"targetStorageMode {mode!r} is not one of Abf, PremiumFiles.")
    scale = body.get("queryScaleOutSettings")
    if scale is None:
        return
    if not isinstance(scale, dict):
        raise BadRequest("queryScaleOutSettings must be a JSON object.")
    for name in sorted(set(scale) - _SCALE_OUT_PROPS):
        raise _unknown(name, "Microsoft.PowerBI.ServiceContracts.Api.DatasetQueryScaleOutSettings")
    auto = scale.get("autoSyncReadOnlyReplicas")
    if auto is not None and not isinstance(auto, bool):
        raise BadRequest("queryScaleOutSettings.autoSyncReadOnlyReplicas must be true or false.")
    most = scale.get("maxReadOnlyReplicas")
    if most is not None and (
        isinstance(most, bool) or not isinstance(most, int) or not -1 <= most <= 64
    ):
        raise BadRequest(
            "queryScaleOutSettings.maxReadOnlyReplicas must be a whole number from -1 to 64."
        )


async def update_dataset(request: Request) -> Response:
    """UpdateDataset(InGroup): 200 for a valid body; the settings do not apply here."""
    await _dataset(request)  # 404 for a dataset that is not in this workspace
    check_update(await _json_body(request))
    # Nothing to change: pbistream has one storage mode and no read-only replicas.
    return Response(status_code=200)


async def get_datasources(request: Request) -> Response:
    """GetDatasources(InGroup): a push dataset has none (or those its create carried)."""
    dataset = await _dataset(request)
    sources = dataset.properties.get("datasources") or []
    return PbiJSONResponse(
        {"@odata.context": f"{_base(request)}/$metadata#datasources", "value": sources}
    )


def routes_under(root: str) -> list[BaseRoute]:
    """The Update Dataset and Get Datasources routes under one API root."""
    return [
        Route(f"{root}/datasets/{{dataset_id}}", update_dataset, methods=["PATCH"]),
        Route(f"{root}/datasets/{{dataset_id}}/datasources", get_datasources, methods=["GET"]),
    ]
