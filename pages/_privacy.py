"""The Data page's privacy parts: forgetting a user (confirmed first) and the workspace's audit log.

Forgetting is :func:`core.runs.forget.forget_user`, the same as ``behaviorlens forget``: what it removed
is shown once, and the runs trained on the user are marked (the Train page offers their retrain). The
audit log (:mod:`core.store.audit`) lists who ingested, trained, exported and forgot what, newest first.
"""

from __future__ import annotations

import streamlit as st

from core.errors import BehaviorLensError
from core.runs.forget import forget_user
from core.store import audit
from core.store.workspace import Workspace
from pages._access import analyst_only
from pages._shared import get_workspace, page_actor, plain

EVERY_DATASET = "(every dataset)"
PENDING_KEY = "forget_pending"  # (user, dataset or None) waiting for the confirmation
DONE_KEY = "forget_done"  # what the last forget removed, shown once
USER_BOX = "User to forget (original ID or pseudonym)"


def forget_section(ws: Workspace) -> None:
    """A user ID and a dataset; Forget asks for a confirmation, then deletes and says what it removed."""
    st.header("Forget a user")
    done = st.session_state.pop(DONE_KEY, None)
    if done is not None:
        (st.success if done[0] == "success" else st.info)(plain(done[1]))
    left, right = st.columns([2, 1])
    user = left.text_input(USER_BOX, key="forget_user", help="Their events, and every stored thing naming them.")
    choice = right.selectbox("From", [EVERY_DATASET, *ws.dataset_names()], key="forget_dataset")
    dataset = None if choice == EVERY_DATASET else choice
    if st.button("Forget this user", key="forget_ask", disabled=not user.strip()):
        st.session_state[PENDING_KEY] = (user.strip(), dataset)
    pending = st.session_state.get(PENDING_KEY)
    if pending is not None:
        where = f"dataset {pending[1]}" if pending[1] else "every dataset"
        st.warning(
            plain(
                f"Delete every event of user {pending[0]} from {where}, with what names them (report examples, "
                "fusion caches), and mark the runs trained on them? This cannot be undone."
            )
        )
        yes, no = st.columns(2)
        yes.button("Yes, forget them", key="forget_confirm", type="primary", on_click=_forget, args=pending)
        no.button("Keep them", key="forget_keep", on_click=lambda: st.session_state.pop(PENDING_KEY, None))


def _forget(user: str, dataset: str | None) -> None:
    st.session_state.pop(PENDING_KEY, None)
    if not analyst_only("forget a user"):
        return
    try:
        out = forget_user(get_workspace(), user, dataset, page_actor())
    except BehaviorLensError as exc:
        st.session_state[DONE_KEY] = ("info", str(exc))
        return
    if not out.events:
        st.session_state[DONE_KEY] = ("info", "Nothing to remove: the user has no events there.")
        return
    removed = ", ".join(f"{n:,} events from {name}" for name, n in out.events.items())
    marked = f"{len(out.runs_marked)} run(s) marked trained on data since deleted" if out.runs_marked else "no run"
    st.session_state[DONE_KEY] = (
        "success",
        f"Removed {removed}; {out.report_examples} report example(s), {len(out.fusion_caches)} fusion cache(s); "
        f"{marked}. The database file was rewritten without them.",
    )
    st.session_state["forget_user"] = ""  # the box is emptied for the next request


def audit_section(ws: Workspace) -> None:
    """The newest entries of the audit log."""
    with st.expander("Audit log: who ingested, trained, exported and forgot what"):
        frame = audit.entries(ws, 200)
        if frame.empty:
            st.caption("Nothing recorded yet.")
        else:
            st.dataframe(frame.astype({"at": "string"}), hide_index=True)
