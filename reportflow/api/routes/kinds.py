"""The report kinds this service runs, with their parameters' JSON Schema."""

from __future__ import annotations

from fastapi import APIRouter, Request

from reportflow.api.deps import CallerDep
from reportflow.api.schemas import COMMON_ERRORS
from reportflow.contract import KindDoc, KindList
from reportflow.kinds import KindRegistry
from reportflow.models import DEFAULT_KIND

router = APIRouter(prefix="/kinds", tags=["kinds"], responses=COMMON_ERRORS)


def kind_docs(kinds: KindRegistry) -> list[KindDoc]:
    return [
        KindDoc(
            name=kind.name,
            title=kind.title,
            description=kind.description,
            format=kind.format,
            content_type=kind.content_type,
            default=kind.name == DEFAULT_KIND,
            params=kind.schema(),
        )
        for kind in kinds.values()
    ]


@router.get("", response_model=KindList)
async def list_kinds(request: Request, caller: CallerDep) -> KindList:
    """Every kind `POST /reports` takes as `"kind"`: its title, format and parameters."""
    return KindList(kinds=kind_docs(request.app.state.kinds))
