"""Reading a shortcut report (`training.shortcuts`'s report.json and pictures) for the page and the
model card: which model has one, its table in Markdown, its pictures with captions."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emotion.storage.runs import REPORT_FILES, RunFolder, read_report

if TYPE_CHECKING:
    from emotion.model import EmotionModel

# The pictures a reader wants first, with what they show.
PICTURES = (
    ("mean_maps", "What each emotion looks at (mean maps; the covered background region outlined)"),
    ("occlusion", "The two tests: covering the strongest background region, replacing the whole background"),
    ("confusion_matrix", "Confusion matrix"),
    ("mistakes", "The most confident mistakes, with the predicted emotion's Grad-CAM"),
    ("sanity", "Sanity check: how much each method's maps change as the network is randomised"),
)


def report_folder_of(model: EmotionModel) -> Path | None:
    """The report folder of the run `model` was loaded from, if that run has a report."""
    run = RunFolder.holding(model.folder) if model.folder is not None else None
    if run is None or run.read_report() is None:
        return None
    return run.report_dir


def shortcut_table(report: dict[str, Any]) -> str:
    """Per emotion: Grad-CAM's share outside the face, each test's drop against its control with
    the corrected p-value, and the verdict (Markdown)."""
    # Short headers: the table must fit a phone; TABLE_NOTE says what they mean.
    rows = [
        "| emotion | faces | outside face | region | whole background | verdict |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, c in report["classes"].items():
        share = c["background_share"].get("gradcam")
        outside = f"{share['mean']:.0%} ± {share['std']:.0%}" if share else "–"
        status = c.get("status") or ("flagged" if c["flagged"] else "–")
        verdict = f"**{status}**" if c["flagged"] else status
        region = test_cell(c.get("occlusion_drop"), c.get("random_drop"), c.get("occlusion_p"))
        swap = test_cell(c.get("swap_drop"), c.get("swap_control_drop"), c.get("swap_p"))
        rows.append(f"| {label} | {c['faces']} | {outside} | {region} | {swap} | {verdict} |")
    return "\n".join(rows)


def report_markdown(report: dict[str, Any]) -> str:
    """The report's words and table, for the page."""
    flagged = ", ".join(report["flagged"]) or "none"
    remedy = remedy_markdown(report.get("remedy"))
    return (
        f"**Flagged: {flagged}.** {report['summary']}\n\n{remedy}{shortcut_table(report)}\n\n"
        f"On `{report['data']}`; accuracy {report['accuracy']:.1%}, macro-F1 {report['macro_f1']:.3f}. "
        f"{TABLE_NOTE}"
    )


def model_report_markdown(report_folder: Path) -> str:
    """The page's Model report words: how the model's recipe holds across seeds, when its run
    recorded it, then the shortcut report."""
    metrics = RunFolder(report_folder.parent).read_metrics()
    return seeds_markdown(metrics) + report_markdown(read_report(report_folder))


def seeds_markdown(metrics: dict[str, Any] | None) -> str:
    """How the model's recipe holds across training seeds (`metrics.json`'s `recipe_seeds`,
    written by `training.demo --ship` from `bench.seeds`), in one paragraph; "" without it."""
    spread = (metrics or {}).get("recipe_seeds")
    if not spread:
        return ""
    parts = [
        f"{len(row['meet'])} of {len(row['of'])} in {precision}"
        for precision, row in spread["precisions"].items()
    ]
    return (
        f"**Across training seeds:** the maps of this model's recipe point at the emotion's features "
        f"(pointing ≥ {spread['target']:.0%} for Grad-CAM and LIME on each of {spread['face_seeds']} sets "
        f"of unseen faces, ≥ {spread['above_blob']:.0%} above a centred blob) for {', '.join(parts)} "
        f"training seeds. This model is seed {spread['seed']} ({spread['precision']}), which "
        f"{'meets' if spread['this_meets'] else 'does not meet'} it. Table: `{spread['table']}`.\n\n"
    )


def remedy_markdown(remedy: dict[str, Any] | None) -> str:
    """A flagged report's "What to do": its sentence, then its commands in one code block."""
    if not remedy:
        return ""
    commands = "\n".join(remedy.get("commands", ()))
    block = f"```bash\n{commands}\n```\n\n" if commands else ""
    return f"**What to do:** {remedy['sentence']}\n\n{block}"


TABLE_NOTE = (
    "*Outside face*: the share of the emotion's Grad-CAM outside the face (mean ± spread over its "
    "correctly classified faces, of which *faces* were tested). *Region*, as drop / control (p): how "
    "much its probability falls, on average, when its strongest background region is covered, "
    "against covering random "
    "background regions of that area. *Whole background*: the same when every background pixel "
    "comes from faces of other emotions, against faces of the same emotion. p: the chance of a "
    "difference this large with no dependence (one-sided Wilcoxon test over the faces, corrected "
    "for all the report's tests). Flagged: p < 0.05 and a difference of at least 0.10."
)


def pictures_html(folder: Path) -> str:
    """The report's pictures as one self-contained HTML block (inline PNGs, captions), sized to
    the page's width: a gallery's square cells would leave wide figures floating in empty space."""
    figures = []
    for path, caption in report_pictures(folder):
        data = base64.b64encode(path.read_bytes()).decode()
        figures.append(
            f'<figure style="margin:0 0 1.5rem"><img src="data:image/png;base64,{data}" '
            f'alt="{html.escape(caption)}" style="max-width:100%;height:auto;display:block">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return "".join(figures)


def report_pictures(folder: Path) -> list[tuple[Path, str]]:
    """(path, caption) of the report's pictures that exist, in reading order."""
    files = (read_report(folder) or {}).get("files", {})
    return [
        (folder / files[key], caption)
        for key, caption in PICTURES
        if key in files and (folder / files[key]).is_file()
    ]


def no_report_text() -> str:
    return (
        "This model has no shortcut report. Make one for a run folder with "
        f"`python -m training.shortcuts --model RUN --data DATA` (it writes `report/{REPORT_FILES['json']}` "
        "there), then serve the run folder: `python -m app --model RUN`."
    )


def test_cell(drop: float | None, control: float | None, p: float | None) -> str:
    """ "0.93 / 0.02 (1e-05)": a test's drop, its control's and the corrected p-value."""
    if drop is None or control is None or p is None:
        return "–"
    return f"{drop:.2f} / {control:.2f} ({p:.2g})"
