"""Ray 2.60's token authentication, as `condition` meets it on a user's cluster.

What Ray does (ray/_private/authentication/authentication_token_setup.py, ray/_private/worker.py):
- An embedded `ray.init()` always turns token auth on (unless RAY_AUTH_MODE says otherwise) and
  writes a new token to ~/.ray/auth_token when none exists.
- `ray start --head` turns it on when a token is found (RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
  names, or ~/.ray/auth_token): so once any embedded Ray ran on the machine, every `ray start`
  cluster of that user wants the token.
- A driver given an explicit address (`ray.init(address=...)`, RAY_ADDRESS) never turns it on by
  itself: without RAY_AUTH_MODE=token it sends no token and its GCS client retries for ~20 s,
  printing `InvalidAuthToken` warnings, before `ConnectionError`.

So before connecting to a cluster, `condition` turns token mode on when a token is available to this
user (`use_available_token`); a cluster without auth accepts a driver that sends one. Nothing here
reads the token itself, only whether and where it exists; nothing imports ray at module level.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"
TOKEN_ENV = "RAY_AUTH_TOKEN"
TOKEN_PATH_ENV = "RAY_AUTH_TOKEN_PATH"
AUTH_FAILURE_MARKS = ("InvalidAuthToken", "Unauthenticated", "AuthenticationError")


@dataclass(frozen=True)
class TokenSource:
    """Where Ray would find a token (never the token)."""

    where: str  # "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH (/path)" or "~/.ray/auth_token (/path)"


def default_token_path() -> Path:
    """Ray's own token file (authentication_token_setup._get_default_token_path)."""
    return Path.home() / ".ray" / "auth_token"


def find_token() -> TokenSource | None:
    """The first place Ray's token loader looks that holds a token, in its order: the RAY_AUTH_TOKEN
    variable, the file RAY_AUTH_TOKEN_PATH names, ~/.ray/auth_token."""
    if os.environ.get(TOKEN_ENV, "").strip():
        return TokenSource(TOKEN_ENV)
    named = os.environ.get(TOKEN_PATH_ENV, "").strip()
    if named:
        return TokenSource(f"{TOKEN_PATH_ENV} ({named})") if _non_empty(Path(named).expanduser()) else None
    path = default_token_path()
    return TokenSource(f"~/.ray/auth_token ({path})") if _non_empty(path) else None


def _non_empty(path: Path) -> bool:
    try:
        return path.is_file() and path.stat().st_size > 0 and bool(path.read_text(errors="replace").strip())
    except OSError:
        return False


def use_available_token() -> TokenSource | None:
    """Before connecting to a cluster: with RAY_AUTH_MODE unset and a token available, turn token
    mode on for this process (and refresh Ray's cached config if ray is already loaded), as Ray
    itself does for a cluster it finds without an address. Returns where the token is, else None.
    An explicit RAY_AUTH_MODE is left as the user set it."""
    if os.environ.get(AUTH_MODE_ENV):
        return find_token() if os.environ[AUTH_MODE_ENV].lower() == "token" else None
    source = find_token()
    if source is not None:
        turn_token_mode_on()
    return source


def turn_token_mode_on() -> None:
    """RAY_AUTH_MODE=token for this process and the Ray processes it starts."""
    os.environ[AUTH_MODE_ENV] = "token"
    if "ray._raylet" in sys.modules:  # Ray caches its config at first use: refresh it (Ray's _enable_token_auth)
        from ray._raylet import Config

        Config.initialize("")


def is_auth_failure(text: str) -> bool:
    """Ray's GCS client output (or error) says the cluster refused this driver's token, or its lack of one."""
    return any(mark in text for mark in AUTH_FAILURE_MARKS)


def auth_failure_hint(token: TokenSource | None) -> str:
    """One line for a cluster that refused this driver: the token was wrong, token mode was turned off
    by the user, or no token was found."""
    if token is not None:
        return refused_token_hint(token)
    if os.environ.get(AUTH_MODE_ENV, "").lower() not in ("", "token"):
        return (f"the cluster wants Ray's authentication token and {AUTH_MODE_ENV}={os.environ[AUTH_MODE_ENV]} turns it off "
                f"here: unset {AUTH_MODE_ENV} (or set it to token)")
    return missing_token_hint()


def missing_token_hint() -> str:
    """One line: what to set when the cluster wants a token and none is available here."""
    return (f"the cluster wants Ray's authentication token and none was found here: set {TOKEN_ENV}, or {TOKEN_PATH_ENV} "
            f"to a file holding it, or copy the head node's ~/.ray/auth_token to {default_token_path()}")


def refused_token_hint(source: TokenSource) -> str:
    return (f"the cluster refused the authentication token from {source.where}: it belongs to another cluster; "
            f"set {TOKEN_ENV} or {TOKEN_PATH_ENV} to the head node's token (its ~/.ray/auth_token)")
