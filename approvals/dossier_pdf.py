"""The evidence dossier as a PDF, drawn with fpdf2 from the data approvals.dossier builds
(the same data the printable page shows).

fpdf2 is pure Python: no browser, no system library. Its built-in fonts cover Latin-1
only, so the dossier uses DejaVu Sans (Debian's fonts-dejavu-core) when it is installed,
for names and reasons in any script; without it, text is folded to Latin-1 and a
character it cannot hold is printed as "?", never dropped silently.
"""

from pathlib import Path

from fpdf import FPDF
from fpdf.fonts import FontFace

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
REGULAR = FONT_DIR / "DejaVuSans.ttf"
BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"

# Latin-1 stand-ins for the few characters the pages use that it lacks.
_FOLD = str.maketrans(
    {
        "\N{EM DASH}": "-",
        "\N{EN DASH}": "-",
        "\N{RIGHTWARDS ARROW}": "->",
        "\N{GREATER-THAN OR EQUAL TO}": ">=",
        "\N{LESS-THAN OR EQUAL TO}": "<=",
        "\N{LEFT DOUBLE QUOTATION MARK}": '"',
        "\N{RIGHT DOUBLE QUOTATION MARK}": '"',
        "\N{LEFT SINGLE QUOTATION MARK}": "'",
        "\N{RIGHT SINGLE QUOTATION MARK}": "'",
        "\N{HORIZONTAL ELLIPSIS}": "...",
        "\N{DOUBLE VERTICAL LINE}": "||",
        "\N{BULLET}": "-",
    }
)


def fold_latin1(text: str) -> str:
    """Text the built-in fonts can print: known stand-ins, then "?" for the rest."""
    return text.translate(_FOLD).encode("latin-1", "replace").decode("latin-1")


class _Dossier(FPDF):
    def __init__(self, *, unicode_font: bool, footer_text: str):
        super().__init__(orientation="P", unit="mm", format="A4")
        self.unicode_font = unicode_font
        self.footer_text = footer_text
        if unicode_font:
            self.add_font("DejaVu", "", str(REGULAR))
            self.add_font("DejaVu", "B", str(BOLD))
            self.family = "DejaVu"
        else:
            self.family = "helvetica"
        self.set_auto_page_break(auto=True, margin=15)
        self.set_margins(15, 15, 15)

    def t(self, text) -> str:
        text = "" if text is None else str(text)
        return text if self.unicode_font else fold_latin1(text)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(self.family, "", 7)
        self.set_text_color(90, 90, 90)
        self.cell(0, 5, self.t(f"{self.footer_text} · page {self.page_no()}"), align="C")
        self.set_text_color(0, 0, 0)

    def heading(self, text: str) -> None:
        self.ln(3)
        self.set_font(self.family, "B", 12)
        self.multi_cell(0, 6, self.t(text), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 9)

    def para(self, text: str, *, size: float = 9, bold: bool = False) -> None:
        self.set_font(self.family, "B" if bold else "", size)
        self.multi_cell(0, 4.6, self.t(text), new_x="LMARGIN", new_y="NEXT")
        self.set_font(self.family, "", 9)

    def pairs(self, rows: list[tuple[str, str]]) -> None:
        with self.table(
            col_widths=(35, 145),
            first_row_as_headings=False,
            borders_layout="NONE",
            line_height=4.8,
            text_align="LEFT",
        ) as table:
            for label, value in rows:
                row = table.row()
                row.cell(self.t(label), style=FontFace(emphasis="BOLD"))
                row.cell(self.t(value))


def _gates(pdf: _Dossier, evidence: dict) -> None:
    pdf.set_font(pdf.family, "", 8.5)
    with pdf.table(
        col_widths=(52, 24, 32, 24, 48),
        headings_style=FontFace(emphasis="BOLD", fill_color=(235, 237, 240)),
        line_height=4.4,
        text_align=("LEFT", "RIGHT", "LEFT", "LEFT", "LEFT"),
        borders_layout="HORIZONTAL_LINES",
    ) as table:
        head = table.row()
        for title in ("Gate", "Number", "95% interval", "Bar", "Verdict"):
            head.cell(pdf.t(title))
        for gate in evidence["gate_rows"]:
            row = table.row()
            label = gate["label"] + ("" if gate.get("required", True) else " (not required)")
            row.cell(pdf.t(label), style=FontFace(emphasis="BOLD"))
            number = gate["number"]
            if gate.get("n") is not None and gate["interval"]:
                number += f" (n={gate['n']:,})"
            row.cell(pdf.t(number))
            row.cell(pdf.t(gate["interval"] or "—"))
            row.cell(pdf.t(gate["bar_text"] or "—"))
            row.cell(pdf.t(gate["verdict_words"]))
            sentence = table.row()
            sentence.cell(pdf.t(gate.get("sentence", "")), colspan=5, align="LEFT")
    pdf.set_font(pdf.family, "", 9)


def dossier_pdf(dossier: dict) -> bytes:
    """The dossier as PDF bytes."""
    unicode_font = REGULAR.exists() and BOLD.exists()
    wf = dossier["workflow"]
    pdf = _Dossier(
        unicode_font=unicode_font,
        footer_text=f"Autonomy Ladder evidence dossier · {wf['slug']} · made {dossier['made_at']}",
    )
    pdf.set_title(pdf.t(f"Evidence dossier: {dossier['title']}"))
    pdf.set_creator("Autonomy Ladder")
    pdf.add_page()

    pdf.set_font(pdf.family, "B", 15)
    pdf.multi_cell(0, 7, pdf.t("Evidence dossier"), new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(pdf.family, "B", 12)
    pdf.multi_cell(0, 6, pdf.t(dossier["title"]), new_x="LMARGIN", new_y="NEXT")
    pdf.para(f"{wf['name']} ({wf['slug']}), {wf['risk_class']} risk. Made {dossier['made_at']}.")
    pdf.ln(1)
    pdf.pairs(dossier["subject"])

    evidence = dossier["evidence"]
    if dossier["kind"] == "promotion":
        pdf.heading("The evidence, as frozen into the request")
    else:
        pdf.heading("The gates: latest snapshot")
    if evidence is None:
        pdf.para("No gates have been computed for this workflow yet.")
    else:
        pdf.para(
            f"Gates computed {evidence['computed_at']} over {evidence['window_days']} days at "
            f"L{evidence['rung']} (snapshot #{evidence['snapshot_id']}). {evidence['verdict']}"
        )
        pdf.ln(1)
        _gates(pdf, evidence)
    hashed = dossier["hash"]
    if hashed is not None:
        pdf.ln(1)
        pdf.para("Evidence hash (sha256 of its canonical JSON)", bold=True)
        pdf.set_font("courier", "", 8.5)
        pdf.multi_cell(0, 4.4, hashed["value"], new_x="LMARGIN", new_y="NEXT")
        pdf.para(hashed["words"])

    pdf.heading("Rollback drill")
    drill = dossier["drill"]
    if drill is None:
        pdf.para("No rollback drill had been run.")
    else:
        pdf.para(drill["sentence"])
        pdf.para(
            f"Started {drill['started_at']} by {drill['by']}; batch {drill['batch']}; "
            f"under load: {drill['under_load']}."
        )

    pdf.heading("Policy")
    policy = dossier["policy"]
    if policy is None:
        pdf.para("No written policy.")
    else:
        pdf.para(f"Version {policy['number']}, saved {policy['saved_at']} by {policy['by']}.")
        if not policy["valid"]:
            pdf.para("These rules no longer fit the workflow's action types.")
        for rule in policy["rules"]:
            pdf.para(f"• {rule['sentence']}  [{rule['id']}: {rule['kind']}, {rule['control']}]")
        if policy["audit"]:
            pdf.para(policy["audit"])

    pdf.heading("Rung history")
    if not dossier["history"]:
        pdf.para("No rung change recorded.")
    for change in dossier["history"]:
        line = f"{change['when']}  {change['move']}  {change['what']}, by {change['by']}"
        pdf.para(line, bold=True)
        if change["reason"]:
            pdf.para(f"Reason: {change['reason']}")
        if change["figures"]:
            pdf.para("; ".join(f"{label}: {value}" for label, value in change["figures"]))

    pdf.heading("Autonomy certificate")
    certificate = dossier["certificate"]
    if certificate is None:
        pdf.para("No certificate has been issued for this.")
    else:
        rows = [
            ("Certificate", certificate["id"]),
            ("Rung", f"L{certificate['rung']}"),
            ("Issued", f"{certificate['issued_at']} by {certificate['approved_by']}"),
            ("State", certificate["state"]),
            ("Policy version", str(certificate["policy_version"] or "none")),
            ("Key id", certificate["key_id"]),
            ("Evidence hash", certificate["evidence_hash"]),
        ]
        if certificate["hash_matches"] is not None:
            rows.append(
                (
                    "Same evidence",
                    "yes: the request's hash"
                    if certificate["hash_matches"]
                    else "NO: differs from the request's hash",
                )
            )
        pdf.pairs(rows)
    return bytes(pdf.output())
