"""A do-nothing service for ServiceProcess tests: `migrate` exits at once, `/readyz` says ready."""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI

from libs.common.settings import Settings

app = FastAPI()


@app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@app.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def main(argv: list[str]) -> None:
    if argv[:1] == ["migrate"]:
        print("probe: nothing to migrate")
        return
    settings = Settings()
    uvicorn.run(app, host=settings.http_host, port=settings.http_port, log_level="warning")


if __name__ == "__main__":
    main(sys.argv[1:])
