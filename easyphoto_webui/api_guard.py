"""Who may call EasyPhoto's REST API inside the WebUI: the host's --api / --nowebui, exposure and --api-auth."""

import secrets

from easyphoto.backends.webui.host import cmd_opt


def api_exposure():
    """Safe by default: the API exists only where the WebUI serves its own (--api, --nowebui), and answers only
    /health when the server is reachable beyond this machine (--listen, --share, --ngrok, a non-loopback
    --server-name) without --api-auth: those routes export photos, delete identities and start downloads."""
    from easyphoto.api.routes import Exposure

    if not (cmd_opt("api") or cmd_opt("nowebui")):
        return Exposure(private=False, hint="start the WebUI with --api to use EasyPhoto's REST API.")
    if _webui_is_public() and not cmd_opt("api_auth"):
        return Exposure(refuse=True, hint="The WebUI is reachable from other machines (--listen, --share, --ngrok "
                                          "or --server-name): start it with --api-auth user:password as well.")
    return Exposure()


def _webui_is_public() -> bool:
    from easyphoto.app import is_loopback

    if cmd_opt("share") or cmd_opt("listen") or cmd_opt("ngrok"):
        return True
    server_name = cmd_opt("server_name")
    return server_name is not None and not is_loopback(str(server_name))


def api_auth_dependencies() -> list:
    """Honour `--api-auth user:pass[,user2:pass2]`: the host only protects its own routes (host-api.md §2.3)."""
    credentials = cmd_opt("api_auth")
    if not credentials:
        return []
    from fastapi import Depends, HTTPException, status
    from fastapi.security import HTTPBasic, HTTPBasicCredentials

    allowed = dict(pair.split(":", 1) for pair in str(credentials).split(",") if ":" in pair)
    basic = HTTPBasic()

    def check(cred: HTTPBasicCredentials = Depends(basic)) -> None:  # noqa: B008 - FastAPI's own idiom
        expected = allowed.get(cred.username)
        if expected is None or not secrets.compare_digest(cred.password, expected):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Incorrect username or password",
                                headers={"WWW-Authenticate": "Basic"})

    return [Depends(check)]
