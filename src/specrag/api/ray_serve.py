"""``specrag serve --ray``: the same FastAPI app (``app.create_app``) as a Ray Serve
deployment, ``replicas`` copies behind Serve's HTTP proxy. Each replica builds the app on
its own process (Serve's ASGI builder), so it opens its own CollectionService over the
same ``SPECRAG_HOME`` and database: versions, tombstones and jobs are shared through them,
as between several ``specrag serve`` processes. Ray is the optional extra ``ray``.
"""

from __future__ import annotations

from typing import Any

from specrag.settings import Settings

DEPLOYMENT = "specrag"


def deployment(settings: Settings, replicas: int = 1) -> Any:
    """The bound Serve application (``serve.run`` takes it)."""
    from ray import serve

    def build_app():
        from specrag.api.app import create_app

        return create_app(settings)

    @serve.deployment(name=DEPLOYMENT, num_replicas=replicas)
    @serve.ingress(build_app)
    class SpecragIngress:
        pass

    return SpecragIngress.bind()


def run(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 8000,
    replicas: int = 1,
    address: str | None = None,
    blocking: bool = True,
) -> Any:
    """Start Serve on ``host:port`` in the cluster at ``address`` (None: the joined one, or
    a new local one) and run the app; blocks until interrupted unless ``blocking=False``
    (then returns the deployment handle)."""
    from specrag.indexing.ray_support import ensure_ray

    ensure_ray(address)
    from ray import serve

    serve.start(http_options={"host": host, "port": port})
    return serve.run(
        deployment(settings, replicas), name=DEPLOYMENT, route_prefix="/", blocking=blocking
    )
