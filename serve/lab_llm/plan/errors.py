"""The two ways planning ends without a plan: bad input, or a model that does not fit."""

from __future__ import annotations

from dataclasses import dataclass, field


class PlanInputError(ValueError):
    """The model spec, the GPU inventory or a limit is missing a field or has a bad value."""


@dataclass(frozen=True)
class FitSuggestion:
    """One change that would make the model fit, with what it costs the user."""

    change: str
    """Short machine name: ``shorter_context``, ``fp8_kv_cache``, ``weights_4bit``, ``cpu_offload``,
    ``one_more_gpu``."""
    description: str
    cost_rank: int
    """Lower is cheaper: giving up context < KV precision < weight precision < speed < money."""
    layout: str = ""


@dataclass
class DoesNotFitError(Exception):
    """No layout of this model fits the GPUs; ``reasons`` say why, ``suggestions`` what would fit."""

    reasons: list[str]
    suggestions: list[FitSuggestion] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What the planner could not read or does not model for this model (as in ``FitPlan.notes``)."""

    def __str__(self) -> str:
        lines = ["The model does not fit on these GPUs:"]
        lines += [f"  - {reason}" for reason in self.reasons]
        if self.suggestions:
            lines.append("Smallest changes that would fit, cheapest first:")
            for n, suggestion in enumerate(self.suggestions, 1):
                lines.append(f"  {n}. {suggestion.description}")
                if suggestion.layout:
                    lines.append(f"     -> {suggestion.layout}")
        else:
            lines.append("No single change among shorter context, fp8 KV cache, 4-bit weights, CPU offload")
            lines.append("or one more GPU of the largest class makes it fit.")
        lines += [f"Note: {note}" for note in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, object]:
        return {
            "reasons": list(self.reasons),
            "suggestions": [
                {"change": s.change, "description": s.description, "cost_rank": s.cost_rank, "layout": s.layout}
                for s in self.suggestions
            ],
            "notes": list(self.notes),
        }
