"""Where Ray 2.60 finds its token, in its order, and what `condition` does with it before connecting
(no Ray started here: the connection itself is tested on real clusters in test_compare_ray.py)."""
from __future__ import annotations

import os

import pytest

from condition.compare import ray_auth
from condition.compare.ray_auth import auth_failure_hint, find_token, is_auth_failure, use_available_token


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def test_token_sources_in_rays_order(shell, monkeypatch):
    assert find_token() is None
    (shell / ".ray").mkdir()
    (shell / ".ray" / "auth_token").write_text("")
    assert find_token() is None  # an empty file is no token
    (shell / ".ray" / "auth_token").write_text("abc\n")
    assert find_token().where == f"~/.ray/auth_token ({shell / '.ray' / 'auth_token'})"
    named = shell / "elsewhere"
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(named))
    assert find_token() is None  # a named file that is missing: Ray does not fall back to ~/.ray either
    named.write_text("def")
    assert find_token().where == f"RAY_AUTH_TOKEN_PATH ({named})"
    monkeypatch.setenv("RAY_AUTH_TOKEN", "ghi")
    assert find_token().where == "RAY_AUTH_TOKEN"


def test_token_mode_is_turned_on_only_when_a_token_is_there_and_the_user_set_no_mode(shell, monkeypatch):
    assert use_available_token() is None and "RAY_AUTH_MODE" not in os.environ
    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")
    monkeypatch.setattr(ray_auth, "turn_token_mode_on", lambda: os.environ.__setitem__("RAY_AUTH_MODE", "token"))
    assert use_available_token().where == "RAY_AUTH_TOKEN" and os.environ["RAY_AUTH_MODE"] == "token"
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert use_available_token() is None and os.environ["RAY_AUTH_MODE"] == "disabled"  # the user's choice stands


def test_one_line_for_each_way_a_cluster_refuses(shell, monkeypatch):
    assert is_auth_failure("gcs_client.cc:210: Failed to get cluster ID from GCS server: Unauthenticated: RPC error: InvalidAuthToken")
    assert not is_auth_failure("ConnectionError: Failed to connect to Ray cluster at 10.0.0.1:6379")
    assert auth_failure_hint(None).startswith("the cluster wants Ray's authentication token and none was found here: set RAY_AUTH_TOKEN")
    assert "refused the authentication token from RAY_AUTH_TOKEN" in auth_failure_hint(ray_auth.TokenSource("RAY_AUTH_TOKEN"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    assert "RAY_AUTH_MODE=disabled turns it off here" in auth_failure_hint(None)
    assert all("\n" not in hint for hint in (auth_failure_hint(None), ray_auth.missing_token_hint()))
