"""The baseline: a bare Starlette app on uvicorn that answers every webhook with 200.

Same server stack as the hub (uvicorn, uvloop, httptools, one process), no work at all.
"""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def hook(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted"})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = Starlette(
    routes=[
        Route("/hooks/{name}", hook, methods=["POST"]),
        Route("/healthz", health),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)
