"""Real Label Studio annotator accounts, made through the invite/signup flow a person would use.

(`users.create` in the SDK makes users who cannot log in.) The new user's own
API token is returned, so whoever holds it annotates exactly as that user.
"""

from __future__ import annotations

import requests

from services.core.errors import PreconditionError


def create_annotator(base_url: str, admin_token: str, email: str, password: str) -> str:
    """Sign up `email` with the organisation's invite link; returns the user's API token."""
    invite = requests.get(f"{base_url}/api/invite", headers={"Authorization": f"Token {admin_token}"}, timeout=30)
    invite.raise_for_status()
    signup_url = base_url + invite.json()["invite_url"]
    with requests.Session() as session:
        session.get(signup_url, timeout=30).raise_for_status()  # sets the CSRF cookie
        form = {
            "csrfmiddlewaretoken": session.cookies.get("csrftoken", ""),
            "email": email,
            "password": password,
            "how_find_us": "",
            "allow_newsletters": "false",
        }
        reply = session.post(signup_url, data=form, headers={"Referer": signup_url}, allow_redirects=False, timeout=30)
        if reply.status_code != 302:
            raise PreconditionError(f"signup of {email} failed with HTTP {reply.status_code}")
        token = session.get(f"{base_url}/api/current-user/token", timeout=30)
        token.raise_for_status()
        return token.json()["token"]
