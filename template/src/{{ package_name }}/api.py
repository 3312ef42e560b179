"""The versioned HTTP API: every resource router is mounted here."""

from fastapi import APIRouter

from .items.router import router as items_router

API_PREFIX = "/api/v1"

api_router = APIRouter(prefix=API_PREFIX)
api_router.include_router(items_router)
