"""``GET /v1/me``: who the caller's key is (role, advertiser, actor in command history).

Why: the console shows who is signed in and hides the buttons a role may not use (the API still
decides every call); scripts use it to check a key before a batch job.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from adtarget.api.deps import OPEN_PRINCIPAL, PrincipalDep, SettingsDep

router = APIRouter(prefix="/v1", tags=["keys"])


@router.get("/me", summary="The caller: role, advertiser scope, actor name")
def me(principal: PrincipalDep, settings: SettingsDep) -> dict[str, Any]:
    """``{"actor", "role", "advertiser_id", "open", "min_audience_size"}``."""
    return {
        "actor": principal.actor,
        "role": principal.role,
        "advertiser_id": principal.advertiser_id,
        "open": principal == OPEN_PRINCIPAL,
        "min_audience_size": settings.min_audience_size,
    }
