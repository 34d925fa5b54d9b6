"""The segment sections: motif galleries and the stop-condition diagnostics."""

from __future__ import annotations

from lamina.report.context import ReportContext, Section

# -- segments and motifs (issue 17) ---------------------------------------------------------

MOTIF_GALLERIES = 12  # motifs shown, most widespread first


def motif_galleries(ctx: ReportContext, cap: int) -> Section:
    """The most widespread motifs: for each, its kind and counts, and up to `cap` images
    that hold it (its medoid's image first, then the images whose segments are closest to
    the motif's centre); the most associated motif pairs by lift.

    Example:
        >>> section = motif_galleries(open_context(lamina.open()), 8)  # doctest: +SKIP
        >>> section.data["motifs"][0]["kind"]  # doctest: +SKIP
        'infrastructure'
    """
    section = Section("motifs", "Motifs", ("segments", "motifs", "motif_summary"))
    if not ctx.has("motifs", "motif_summary"):
        section.missing = "No motifs yet: run `lamina segment` then `lamina motifs`."
        return section
    summary = ctx.rows(
        "select * from motif_summary order by images desc, segments desc, motif "
        f"limit {MOTIF_GALLERIES}"
    )
    shown = ", ".join(str(int(m["motif"])) for m in summary) or "null"
    tiles = ctx.rows(
        "select m.motif, m.image_id, max(m.similarity + case when m.is_medoid then 1 else 0 "
        "end) as rank, count(*) as n, p.path from motifs m left join image_paths p "
        f"using (image_id) where m.motif in ({shown}) group by m.motif, m.image_id, p.path "
        "order by m.motif, rank desc, m.image_id"
    )
    motifs = []
    for m in summary:
        mine = [t for t in tiles if t["motif"] == m["motif"]][: int(cap)]
        query = f"select * from image_motifs where motif = {int(m['motif'])}"
        motifs.append({**m, "tiles": mine, "command": f'lamina sql "{query}"'})
    pairs = []
    if ctx.has("motif_cooccurrence"):
        pairs = ctx.rows(
            "select * from motif_cooccurrence where images_both >= 2 "
            "order by lift desc, images_both desc, motif_a, motif_b limit 10"
        )
    section.data = {
        "n_motifs": ctx.value("select count(*) from motif_summary"),
        "n_segments": ctx.value("select count(*) from motifs"),
        "kinds": ctx.rows("select kind, count(*) as n from motif_summary group by 1 order by 1"),
        "motifs": motifs,
        "pairs": pairs,
    }
    return section


# -- stop-condition diagnostics (`lamina diagnose`) --------------------------------------------

DIAGNOSTIC_TABLES = ("motifs", "segment_features", "caption_clusters")


def diagnostics(ctx: ReportContext) -> Section:
    """The checks of `lamina diagnose`: for each, its verdict and numbers and the layers
    it read, or what is missing and the command that makes it.

    Example:
        >>> diagnostics(open_context(lamina.open())).data["checks"][0]["name"]  # doctest: +SKIP
        'segment_models'
    """
    from dataclasses import asdict

    from lamina.jobs.diagnose import diagnose

    section = Section("diagnostics", "Stop-condition diagnostics", DIAGNOSTIC_TABLES)
    section.data = {
        "checks": [asdict(c) for c in diagnose(ctx.store).checks],
        "command": "lamina diagnose",
    }
    return section
