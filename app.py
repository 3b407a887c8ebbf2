"""BehaviorLens: the frame and router of the dashboard (``streamlit run app.py``).

It sets the page config and session defaults, makes sure the sample dataset is
in the workspace (once per process), draws the sidebar dataset picker and the
workspace status, and routes to the pages with ``st.navigation``: where sign-in is set up
(``pages/_access.py``), only to the pages of the signed-in person's role, and to a sign-in page before that.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.navigation.page import StreamlitPage

from core.errors import BehaviorLensError
from pages._access import Access, current_access, identity_sidebar, may_open, sign_in_page
from pages._shared import (
    DATASET_KEY,
    DEFAULT_DATASET,
    PENDING_DATASET_KEY,
    REPORT_KEY,
    ensure_sample,
    get_workspace,
    plain,
    show_error,
    sweep_uploads,
    workspace_root,
)

HERE = Path(__file__).resolve().parent
# (file, title, icon, url path): a screen joins the navigation once its file exists.
SCREENS: tuple[tuple[str, str, str, str], ...] = (
    ("pages/data.py", "Data", ":material/table_chart:", "data"),
    ("pages/train.py", "Train", ":material/model_training:", "train"),
    ("pages/influence.py", "Influence", ":material/insights:", "influence"),
    ("pages/explain.py", "Explain", ":material/psychology:", "explain"),
    ("pages/fusion.py", "Fusion", ":material/tune:", "fusion"),
    ("pages/export.py", "Export", ":material/download:", "export"),
)
SESSION_DEFAULTS: dict[str, object] = {DATASET_KEY: DEFAULT_DATASET, REPORT_KEY: None}


def init_session() -> None:
    """Session defaults, set once per browser session."""
    for key, value in SESSION_DEFAULTS.items():
        st.session_state.setdefault(key, value)


def home() -> None:
    """The start page: what BehaviorLens does and the datasets in the workspace."""
    st.title("BehaviorLens")
    st.caption("Upload interaction logs and see how each user behavior drives recommendations.")
    try:
        datasets = get_workspace().list_datasets()
    except BehaviorLensError as exc:
        show_error(exc)
        return
    st.subheader("Datasets in the workspace")
    st.dataframe(datasets, hide_index=True)
    if may_open(current_access().role, "data"):
        st.page_link("pages/data.py", label="Open the Data page", icon=":material/table_chart:")


def dataset_picker(names: list[str]) -> str | None:
    """The sidebar dataset selector, bound to ``st.session_state["dataset"]``."""
    pending = st.session_state.pop(PENDING_DATASET_KEY, None)
    if pending in names:
        st.session_state[DATASET_KEY] = pending
    if not names:
        st.session_state[DATASET_KEY] = None
        st.sidebar.info("No dataset yet: upload one on the Data page.")
        return None
    if st.session_state.get(DATASET_KEY) not in names:
        st.session_state[DATASET_KEY] = DEFAULT_DATASET if DEFAULT_DATASET in names else names[0]
    return st.sidebar.selectbox("Dataset", names, key=DATASET_KEY)


def workspace_status(chosen: str | None) -> None:
    """Workspace folder, number of datasets and the chosen dataset's events, in the sidebar."""
    ws = get_workspace()
    names = ws.dataset_names()
    st.sidebar.caption(plain(f"Workspace: {ws.root}"))
    st.sidebar.caption(plain(f"{len(names)} dataset(s)"))
    if chosen is not None:
        st.sidebar.caption(plain(f"{chosen}: {ws.dataset(chosen).n_events:,} events"))


def sidebar() -> None:
    """Dataset picker and workspace status (errors shown, never raised); stale upload copies swept."""
    try:
        sweep_uploads()  # every run from the first: Streamlit has no session-end hook (core.store.uploads)
        ensure_sample(workspace_root())
    except BehaviorLensError as exc:
        with st.sidebar:
            show_error(exc)
    try:
        chosen = dataset_picker(get_workspace().dataset_names())
        workspace_status(chosen)
    except BehaviorLensError as exc:
        with st.sidebar:
            show_error(exc)


def navigation(access: Access) -> StreamlitPage:
    """The pages whose files exist and the role may open, after the home page; only the sign-in page without a
    role."""
    if access.role is None:
        return st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:", default=True)])
    pages = [st.Page(home, title="Home", icon=":material/home:", default=True)]
    for file, title, icon, url in SCREENS:
        if (HERE / file).is_file() and may_open(access.role, url):
            pages.append(st.Page(file, title=title, icon=icon, url_path=url))
    return st.navigation(pages)


def main() -> None:
    """Frame: config, session, who is signed in, router, sidebar, then the chosen page."""
    st.set_page_config(page_title="BehaviorLens", layout="wide")
    init_session()
    access = current_access()
    page = navigation(access)
    if access.role is not None:
        sidebar()
        identity_sidebar(access)
    page.run()


main()
