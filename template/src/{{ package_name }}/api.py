"""The versioned HTTP API: the items router and each feature's, under one prefix."""

from typing import Any

from fastapi import APIRouter

from .feature import Service
from .items.router import router as items_router

API_PREFIX = "/api/v1"


def build_api(service: Service) -> APIRouter:
    """The API's routes, with what every feature adds to each of them."""
    responses: dict[int | str, dict[str, Any]] = {}
    for feature in service.features:
        responses |= feature.api_responses()
    api = APIRouter(
        prefix=API_PREFIX,
        dependencies=[d for f in service.features for d in f.api_dependencies(service)],
        responses=responses,
    )
    api.include_router(items_router)
    for feature in service.features:
        for router in feature.api_routers():
            api.include_router(router)
    return api
