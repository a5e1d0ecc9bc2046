"""A TLS gateway that exposes only Flower's Fleet API to the client VPCs.

In flwr 1.42 the SuperLink serves its Fleet API (what SuperNodes call), its Control API (run
submission, node registration; no authentication in the open-source build) and its Runtime API on one
port. Whoever reaches that port could submit runs or register nodes. So on the server the SuperLink
listens on 127.0.0.1 only, and this gateway listens on the notebook's private address (the port the
client CIDRs may reach): it forwards the Fleet API's own routes, read from Flower's Fleet router so
the list cannot drift from the SuperLink it fronts, to the SuperLink over TLS and answers everything else
with 403. The match is on the raw request path, byte for byte: no prefix test, no decoding, so
``/v1/fleet/../control/start-run`` or ``%2e%2e`` spellings never reach the SuperLink. SuperNode
authentication survives the hop: SuperNodes sign a timestamp in
headers, which are forwarded unchanged.

    python -m fl_runtime.aws.fleet_gateway --listen 10.0.1.23:9092 --upstream 127.0.0.1:40111 \\
        --certificate server.crt --key server.key --ca ca.crt

Built from Flower's own dependencies (Starlette, httpx, uvicorn): nothing else to install offline.
"""

from __future__ import annotations

import argparse
import contextlib
import ssl
import sys
from pathlib import Path

from fl_runtime.launch.flower import SuperLink, flower_env, wait_until_healthy
from fl_runtime.launch.processes import Supervisor

HEALTH = "/health"  # readiness, for the launcher; says nothing about runs or nodes
# connection-level headers are the gateway's own business on each side of the hop
HOP_BY_HOP = {
    b"connection",
    b"keep-alive",
    b"proxy-authenticate",
    b"proxy-authorization",
    b"te",
    b"trailers",
    b"transfer-encoding",
    b"upgrade",
    b"host",
    b"content-length",
}


def fleet_routes() -> frozenset[tuple[str, str]]:
    """(method, path) of every Fleet API route the installed SuperLink serves."""
    from fastapi.routing import APIRoute
    from flwr.superlink.routers.fleet.router import router

    routes = [route for route in router.routes if isinstance(route, APIRoute)]
    return frozenset((method, route.path) for route in routes for method in route.methods or ())


def create_app(upstream: str, ca_file: str):
    import httpx
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    client = httpx.AsyncClient(
        base_url=f"https://{upstream}", verify=ssl.create_default_context(cafile=ca_file), timeout=120.0
    )

    allowed = fleet_routes() | {("GET", HEALTH)}

    async def forward(request: Request) -> Response:
        # the path as sent, before any decoding or normalisation, and no query string: Fleet calls carry none
        path = (request.scope.get("raw_path") or b"").decode("latin-1")
        if (request.method, path) not in allowed or request.url.query:
            shown = path if len(path) <= 200 else path[:200] + "..."
            return JSONResponse(
                {"detail": f"{request.method} {shown} is not served on this port; only the Fleet API is"},
                status_code=403,
            )
        headers = [(k, v) for k, v in request.headers.raw if k.lower() not in HOP_BY_HOP]
        answer = await client.request(request.method, path, content=await request.body(), headers=headers)
        kept = {
            k: v
            for k, v in answer.headers.items()
            if k.lower().encode() not in HOP_BY_HOP and k.lower() != "content-encoding"
        }
        return Response(answer.content, status_code=answer.status_code, headers=kept)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await client.aclose()

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
    return Starlette(routes=[Route("/{path:path}", forward, methods=methods)], lifespan=lifespan)


PROCESS = "fleet-gateway"


def start(supervisor: Supervisor, link: SuperLink, listen: str, workspace: Path, timeout: float = 60.0) -> None:
    """Run the gateway as a process of ``supervisor`` on ``listen`` (HOST:PORT) in front of ``link``, with the
    SuperLink's own certificate; return once it answers over TLS."""
    tls = link.tls
    command = [
        sys.executable, "-m", "fl_runtime.aws.fleet_gateway", "--listen", listen,
        "--upstream", f"127.0.0.1:{link.port}", "--certificate", str(tls.server_certificate),
        "--key", str(tls.server_key), "--ca", str(tls.ca_certificate),
    ]  # fmt: skip
    supervisor.start(PROCESS, command, flower_env(workspace / "gateway-home"), workspace / "gateway")
    wait_until_healthy(
        supervisor, PROCESS, what="the Fleet gateway", address=listen, ca=tls.ca_certificate, timeout=timeout
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Expose only the Fleet API of a SuperLink, over TLS")
    parser.add_argument("--listen", required=True, help="HOST:PORT the client VPCs reach")
    parser.add_argument("--upstream", required=True, help="HOST:PORT of the SuperLink (loopback)")
    parser.add_argument("--certificate", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--ca", required=True, help="CA that signed the SuperLink's certificate")
    args = parser.parse_args(argv)
    import uvicorn

    host, _, port = args.listen.rpartition(":")
    uvicorn.run(
        create_app(args.upstream, args.ca),
        host=host,
        port=int(port),
        ssl_certfile=args.certificate,
        ssl_keyfile=args.key,
        log_level="warning",
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
