"""IPython integration: ``%load_ext llmroute_magic`` lands here.

Loading registers the magics, binds the default router as ``llm`` and teaches IPython to show
matplotlib figures as PNG. It imports no pandas, matplotlib or ipywidgets: those load on first use.
"""

from __future__ import annotations

from typing import Any

_MAGICS_ATTR = "_llmroute_magics"


def _figure_png(fig: Any) -> bytes:
    from .._plots import figure_to_png

    return figure_to_png(fig)


def load_ipython_extension(ip: Any) -> None:
    """Register ``%llm`` / ``%%llm`` and put the router in the namespace as ``llm``."""
    from .magics import LLMRouteMagics

    magics = getattr(ip, _MAGICS_ATTR, None)
    if magics is None:
        magics = LLMRouteMagics(shell=ip)
        ip.register_magics(magics)
        ip.configurables.append(magics)  # so %config LLMRouteMagics.<setting> finds it
        setattr(ip, _MAGICS_ATTR, magics)
    # Figures from router.plot() / %llm plot render without pyplot or an inline backend.
    png = ip.display_formatter.formatters["image/png"]
    png.for_type_by_name("matplotlib.figure", "Figure", _figure_png)
    magics.bind_default_router()


def unload_ipython_extension(ip: Any) -> None:
    """Remove the magics and release the routers (and simulators) the extension started."""
    magics = getattr(ip, _MAGICS_ATTR, None)
    if magics is None:
        return
    var = magics.router_var
    owned = list(magics._owned)
    magics.release_all()
    if any(ip.user_ns.get(var) is r for r in owned):
        ip.user_ns.pop(var, None)
    for kind in ("line", "cell"):
        ip.magics_manager.magics[kind].pop("llm", None)
    if magics in ip.configurables:
        ip.configurables.remove(magics)
    delattr(ip, _MAGICS_ATTR)
