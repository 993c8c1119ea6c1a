"""`gantools models`: the registry's table of models and losses."""

from __future__ import annotations

import typer

from gantools.cli import app
from gantools.cli.common import QuietOpt, VerboseOpt, handle_errors, print_json


@app.command(help="List the registered models (and losses): name, data, conditional, default loss, description.")
@handle_errors
def models(
    json_: bool = typer.Option(False, "--json", help="One JSON object on stdout, for scripts."),
    quiet: bool = QuietOpt,
    verbose: bool = VerboseOpt,
) -> None:
    from gantools.registry import LOSSES, MODELS

    model_rows = [
        {"name": n, "data": s.data_kind, "conditional": s.conditional, "loss": s.default_loss,
         "trained_by": "impute" if s.trainer == "gain" else "train", "description": s.description}
        for n, s in MODELS
    ]
    loss_rows = [{"name": n, "description": s.description} for n, s in LOSSES]
    if json_:
        print_json({"models": model_rows, "losses": loss_rows})
        return
    from rich.markup import escape
    from rich.table import Table

    from gantools.cli.common import stdout_console
    from gantools.log import color_enabled

    con = stdout_console(no_color=not color_enabled(), highlight=False, soft_wrap=False)
    t = Table("model", "data", "cond.", "loss", "trained by", "description", title="models", box=None)
    for r in model_rows:
        t.add_row(r["name"], r["data"], "yes" if r["conditional"] else "no", r["loss"], r["trained_by"], escape(r["description"]))
    con.print(t)
    t = Table("loss", "description", title="losses", box=None)
    for r in loss_rows:
        t.add_row(r["name"], escape(r["description"]))
    con.print(t)
