"""Request and response bodies of the feedback API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

TEAM_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"  # the gateway's team names (they also name export folders)


class FeedbackIn(BaseModel):
    """Feedback on one served request: thumbs or a 1-5 rating, plus optional detail."""

    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(min_length=1, max_length=200, description="The x-request-id the gateway returned.")
    team: str | None = Field(
        None,
        pattern=TEAM_PATTERN,
        description="Admin only: the team whose request it is (a team key always means its own).",
    )
    thumbs: Literal["up", "down"] | None = Field(None, description="Thumbs up or down (give this or rating).")
    rating: int | None = Field(None, ge=1, le=5, description="1 (bad) to 5 (excellent) (give this or thumbs).")
    categories: list[str] = Field(
        default_factory=list, max_length=20, description="Free tags such as 'wrong', 'unsafe', 'helpful'."
    )
    comment: str | None = Field(None, max_length=10_000, description="What the user said about the answer.")
    corrected_answer: str | None = Field(None, max_length=50_000, description="The answer the user expected.")

    @model_validator(mode="after")
    def _one_signal(self) -> FeedbackIn:
        if (self.thumbs is None) == (self.rating is None):
            raise ValueError("give exactly one of 'thumbs' or 'rating'")
        if any(not c or len(c) > 64 for c in self.categories):
            raise ValueError("categories must be 1-64 characters each")
        return self

    def score(self) -> float:
        """Normalized 0 (worst) to 1 (best), so thumbs and ratings average together."""
        if self.thumbs is not None:
            return 1.0 if self.thumbs == "up" else 0.0
        return (self.rating - 1) / 4  # type: ignore[operator]


class FeedbackOut(BaseModel):
    """A stored feedback."""

    id: int
    request_id: str
    team: str
    key_id: str | None
    created_at: float
    thumbs: str | None
    rating: int | None
    score: float
    categories: list[str]
    comment: str | None
    corrected_answer: str | None
    model: str | None = None
    endpoint: str | None = None


class ListOut(BaseModel):
    """A page of results."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    limit: int
    offset: int


class LabelIn(BaseModel):
    """A human label on a queued item."""

    model_config = ConfigDict(extra="forbid")

    label: str = Field(
        min_length=1, max_length=64, description="'good' (keep the answer), 'bad', or any team-defined label."
    )
    corrected_answer: str | None = Field(None, max_length=50_000, description="The answer it should have given.")
    comment: str | None = Field(None, max_length=10_000, description="Notes for other labelers.")


class ExportIn(BaseModel):
    """Which examples go into a fine-tuning dataset."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        "feedback-sft",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$",
        description="Dataset name, without '--'; versions count up per team and name. In the registry a team's "
        "dataset is '<team>--<name>', so two teams' datasets of one name never mix.",
    )
    team: str | None = Field(
        None, pattern=TEAM_PATTERN, description="Admin only: restrict to one team (a team key is always restricted)."
    )
    model: str | None = Field(None, description="Only requests served by this model.")
    endpoint: Literal["chat", "completions", "rag"] | None = Field(None, description="Only this endpoint.")
    since: float | None = Field(None, description="Unix seconds; requests at or after.")
    until: float | None = Field(None, description="Unix seconds; requests before.")
    min_rating: int = Field(4, ge=1, le=5, description="Lowest rating that counts as positive.")
    include_labeled: bool = Field(True, description="Include labeled queue items ('good' or corrected).")
    include_feedback: bool = Field(True, description="Include positively rated or user-corrected requests.")
    register_dataset: bool = Field(True, description="Register the file as a dataset version (registry, else MLflow).")

    @model_validator(mode="after")
    def _no_separator(self) -> ExportIn:
        if "--" in self.name:
            raise ValueError("name: '--' is reserved (it separates the team from the name in the registry)")
        return self


class DatasetOut(BaseModel):
    """An exported dataset version."""

    name: str
    version: int
    created_at: float
    team: str | None
    created_by: str = Field(description="Who exported it: team/project/key id of the caller's key, or 'admin'.")
    registry_name: str = Field(description="The dataset's name in the registry ('<team>--<name>', or the name).")
    sha256: str
    rows: int
    path: str = Field(description="The file, relative to the service's export folder (no server paths are shown).")
    filters: dict[str, Any]
    registered_in: str
    registry_ref: str | None = None
    skipped: dict[str, int] = Field(default_factory=dict)
