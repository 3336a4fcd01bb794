"""Schemathesis hooks for tests/schemathesis/run.sh.

The run authenticates with keys issued offline, one per test user. Their users own them, so
an unguarded run would sooner or later revoke, rotate or re-limit its own key (schemathesis
reuses ids it sees in responses, such as `key.id` from GET /v1/me) and every request after
that would be a 403. This hook points any change aimed at one of those keys at a key id
that does not exist instead, so the run keeps its credentials; reads of them stay as they
are. Every other key, including those the run creates, is fair game.
"""

import os

import schemathesis

PROTECTED = set(filter(None, os.environ.get("IBLUEPRINT_PROTECTED_KEY_IDS", "").split(",")))
# Well-formed, and no key has it: answers 404 like any foreign id.
DECOY = "key_0000000000000000"


@schemathesis.hook
def before_call(context, case, **kwargs):
    if case.method.upper() in ("GET", "HEAD"):
        return
    params = case.path_parameters or {}
    if params.get("id") in PROTECTED:
        params["id"] = DECOY
