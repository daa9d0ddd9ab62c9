"""Where ordermill answers, as a browser on this machine reaches it."""

from settings import Settings


def browsable(host: str) -> str:
    """A host to put in a URL: a wildcard or loopback bind address is reached as localhost."""
    return "localhost" if host in ("0.0.0.0", "::", "127.0.0.1", "::1", "") else host


def api_url(settings: Settings) -> str:
    return f"http://{browsable(settings.api_host)}:{settings.api_port}"


def codec_endpoint(settings: Settings) -> str:
    return f"{api_url(settings)}/codec"
