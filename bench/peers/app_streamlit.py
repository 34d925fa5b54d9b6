"""The review app's grid written in Streamlit, timed with Streamlit's AppTest (the script
reruns server side; no browser, websocket or image transfer counted): the measurement
behind the choice of Starlette for `lamina app` (docs/ARCHITECTURE.md, bench/results/app.md).

Streamlit stays out of lamina's environment: install it beside it, then run

    .venv/bin/pip install --target bench/work/streamlit streamlit==1.67.0 altair pydeck \\
        watchdog websockets blinker cachetools toml tenacity gitpython rich narwhals
    .venv/bin/python bench/peers/app_streamlit.py   # after bench/app.py built the 100k store

It appends its packages after lamina's on sys.path, so lamina's own versions win.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "bench" / "work" / "app-100000" / "store"

SCRIPT = """
import streamlit as st
import lamina
from lamina.passes.thumbs import thumb_path
from lamina.review import query, reader
from lamina.review.query import Filters

@st.cache_resource
def views():
    s = lamina.open({store!r})
    return s, reader.Views(s)

s, v = views()
r = v.reader()
opts = v.cached("options", lambda: query.options(s, r))
c1, c2, c3 = st.columns(3)
flag = c1.selectbox("flag", [""] + opts["flag"], key="flag")
tag = c2.selectbox("tag", [""] + opts["tag"], key="tag")
page_no = c3.number_input("page", min_value=1, value=1, key="page")
page = query.grid(s, Filters(flag=flag, tag=tag, page=int(page_no), size=48), r)
st.write(f"{{page.total}} files")
cols = st.columns(6)
for k, row in enumerate(page.rows):
    with cols[k % 6]:
        st.image(str(thumb_path(s, row["image_id"])), caption=row["rel_path"])
        st.checkbox("select", key=f"sel-{{row['image_id']}}")
        st.multiselect("approve", row.get("top_labels") or [], key=f"lab-{{row['image_id']}}")
"""


def main() -> None:
    sys.path.insert(0, str(ROOT / "src"))
    sys.path.append(str(ROOT / "bench" / "work" / "streamlit"))
    from streamlit.testing.v1 import AppTest

    script = Path(tempfile.mkdtemp()) / "grid_app.py"
    script.write_text(SCRIPT.format(store=str(STORE)))
    at = AppTest.from_file(str(script), default_timeout=120)
    t0 = time.perf_counter()
    at.run()
    first = time.perf_counter() - t0
    assert not at.exception, at.exception
    flips, filters = [], []
    for p in range(2, 9):
        at.number_input(key="page").set_value(p)
        t0 = time.perf_counter()
        at.run()
        flips.append(time.perf_counter() - t0)
    for f in ["blurry", "dark", "blurry", "dark", "blurry"]:
        at.selectbox(key="flag").set_value(f)
        t0 = time.perf_counter()
        at.run()
        filters.append(time.perf_counter() - t0)
    print(
        f"Streamlit AppTest, server side only: first run {first * 1000:.0f} ms; page flip "
        f"median {statistics.median(flips) * 1000:.0f} ms (worst {max(flips) * 1000:.0f}); "
        f"filter change median {statistics.median(filters) * 1000:.0f} ms "
        f"(worst {max(filters) * 1000:.0f})"
    )


if __name__ == "__main__":
    main()
