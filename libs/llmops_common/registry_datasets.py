"""Dataset versions in the registry, registered once per digest: what training and fine-tuning jobs record as the
lineage of the models they register (`GET`/`POST /v1/datasets/{name}/versions`)."""

from __future__ import annotations

from typing import Any

import httpx


def ensure_dataset_version(http: httpx.Client, base: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
    """`{"name", "version"}` of the version of `name` whose digest is `body["digest"]`, registered with `body` when
    no version has it (a rerun on the same data reuses the version instead of adding a copy)."""
    found = http.get(f"{base}/v1/datasets/{name}/versions")
    if found.status_code == 200:
        for version in found.json():
            if version.get("digest") == body["digest"]:
                return {"name": name, "version": int(version["version"])}
    resp = http.post(f"{base}/v1/datasets/{name}/versions", json=body)
    resp.raise_for_status()
    return {"name": name, "version": int(resp.json()["version"])}
