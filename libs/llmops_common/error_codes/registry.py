"""The registry's codes (:8003): principals and roles, models, prompts, datasets, evaluations, promotions."""

from __future__ import annotations

from llmops_common.error_codes.base import ErrorCode

_EVIDENCE_FIX = (
    "attach a run recorded through `POST /v1/evaluations` (evaluator token, `$LLMOPS_EVALUATOR_TOKEN`) or a rag "
    "eval run (tagged `llmops.evaluator=rag`) for this model and version"
)

CODES = (
    # --- who is calling
    ErrorCode(
        "unauthenticated",
        401,
        "a write without a token, or `POST /v1/evaluations` without a platform evaluator's token",
        "writes need a token: `demo-member-token`, `demo-reviewer-token` (dev mode) or "
        "`$LLMOPS_REGISTRY_ADMIN_TOKEN`; evaluations take `$LLMOPS_EVALUATOR_TOKEN` (re-run `make up` if it is "
        "missing from `.llmops/env`)",
        "this call needs `Authorization: Bearer <token>`",
    ),
    ErrorCode(
        "forbidden",
        403,
        "the principal's role is too low for this call",
        "approvals need a reviewer; policies and principals need admin",
        "role {role!r} may not do this; it needs {wanted!r} or above",
    ),
    ErrorCode(
        "self_approval",
        403,
        "four-eyes rule: the requester tried to approve their own request",
        "another reviewer (or, for a principal request, another admin) approves",
        "four-eyes rule: a different reviewer must approve this",
    ),
    ErrorCode(
        "approver_too_new",
        403,
        "the approver was created after the request, so is not an independent second pair of eyes",
        "approve with a principal that existed before the request",
        "the approver must be a principal that existed before the request",
    ),
    ErrorCode(
        "invalid_on_behalf_of",
        400,
        "a service registered a dataset for a caller without a valid on-behalf-of principal",
        "send the caller's principal in the header the message names",
        "a service registers for its caller: send {header} with the caller's principal",
    ),
    ErrorCode(
        "on_behalf_not_allowed",
        403,
        "only a platform service (`REGISTRY_SERVICE_TOKENS`) may register on behalf of someone else",
        "drop the on-behalf-of header",
        "only a platform service (REGISTRY_SERVICE_TOKENS) may register on behalf of someone else; drop {header}",
    ),
    ErrorCode(
        "principal_exists",
        409,
        "a principal with that name already exists",
        "pick another name, or change the existing principal's role",
        "principal {name!r} already exists",
    ),
    ErrorCode(
        "token_in_use",
        409,
        "the token already belongs to another principal",
        "generate a new token for the new principal",
        "that token already belongs to another principal",
    ),
    ErrorCode(
        "principal_not_found",
        404,
        "no principal with that name",
        "`GET /v1/principals` lists them (admin)",
        "principal {name!r} does not exist",
    ),
    ErrorCode(
        "request_pending",
        409,
        "a request about this principal is already pending",
        "decide the pending request (its id is in `existing_id`) first",
        "request {request_id} for {name!r} is already pending",
    ),
    # --- models, prompts, datasets
    ErrorCode(
        "duplicate_version",
        409,
        "one artifact, one version: this artifact is already registered (`existing_version`)",
        "use the existing version, or a new artifact URI (a `#fragment` is enough for the exercises)",
        "model {name!r} version {version} already has artifact {artifact_uri}",
    ),
    ErrorCode(
        "name_in_use",
        409,
        "the name is already used by the other kind of object (a model named like a prompt, or the reverse)",
        "pick another name",
        "{name!r} is a prompt; pick another model name",
    ),
    ErrorCode(
        "invalid_artifact_uri",
        400,
        "the artifact URI's scheme is not allowed, or its file lies outside the allowed folders",
        "use one of the schemes the message lists",
        "artifact scheme {scheme!r} is not one of {schemes}",
    ),
    ErrorCode(
        "version_not_found",
        404,
        "the model or prompt has no such version",
        "`GET /v1/models/{name}/versions` (or the prompt's) lists them",
        "model {name!r} has no version {version}",
    ),
    ErrorCode(
        "alias_not_found",
        404,
        "the model or prompt has no such alias yet",
        'render a version explicitly with `"version": "1"` until an alias exists; promote one to create it',
        "prompt {name!r} has no alias {alias!r}",
    ),
    ErrorCode(
        "prompt_not_found",
        404,
        "no prompt with that name",
        "names are case-sensitive; `GET /v1/prompts` lists them",
        "prompt {name!r} does not exist",
    ),
    ErrorCode(
        "missing_variables",
        400,
        "rendering a prompt without a value for each of its `{{variable}}`s (the envelope lists `missing`)",
        "pass every `{{variable}}` in `variables`",
        "prompt {name!r} version {version} needs variables {missing}",
    ),
    ErrorCode(
        "dataset_not_found",
        404,
        "the dataset has no such version",
        "`GET /v1/datasets/{name}/versions` lists them",
        "dataset {name!r} has no version {version}",
    ),
    ErrorCode(
        "unknown_dataset",
        400,
        "the body references a dataset version that does not exist",
        "register the dataset first, or fix the name and version",
        "dataset {name!r} has no version {version}",
    ),
    ErrorCode(
        "duplicate_dataset",
        409,
        "a version with the same digest exists (`existing_version`)",
        "use the existing version",
        "dataset {name!r} version {version} already has digest {digest}",
    ),
    ErrorCode(
        "unknown_run",
        400,
        "the MLflow run id does not exist",
        "copy the run id from MLflow (or from the answer that created it)",
        "MLflow run {run_id} does not exist",
    ),
    ErrorCode(
        "tamper_detected",
        409,
        "the object was changed in MLflow behind the registry's back, so the registry refuses to serve it",
        "the `findings` say what changed; restore it through the registry, or register a new version",
        "{object_type} {name!r} was changed in MLflow outside the registry and is not served: {details}",
    ),
    # --- evaluations and promotions
    ErrorCode(
        "untrusted_eval_run",
        400,
        "the attached run was not written by a platform evaluator (or lies outside its experiments)",
        _EVIDENCE_FIX,
        "run {run_id} was not written by a platform evaluator (tag llmops.evaluator in {trusted})",
    ),
    ErrorCode(
        "eval_run_mismatch",
        400,
        "the attached run evaluated another model or version",
        _EVIDENCE_FIX,
        "run {run_id} evaluated {model!r}, not {name!r} version {version}",
    ),
    ErrorCode(
        "eval_run_unfinished",
        400,
        "the attached run has not finished",
        "wait for the run to finish, then attach",
        "run {run_id} is {status}, not FINISHED",
    ),
    ErrorCode(
        "eval_run_empty",
        400,
        "the attached run logged no metrics",
        "log the metrics in the run, or attach another",
        "run {run_id} logged no metrics",
    ),
    ErrorCode(
        "policy_not_met",
        422,
        "an approval policy failed (a metric below its minimum, or self-reported instead of measured); the "
        "envelope carries `policy_check`; the request stays pending",
        "re-run the evaluation and record it as the evaluator (`POST /v1/evaluations` with "
        "`LLMOPS_EVALUATOR_TOKEN`), attach its `run_id` (`POST /v1/models/{name}/versions/{v}/evals`) and approve "
        "again: numbers a requester posts never open a gate",
        "production-gate: eval_pass_rate=0.7 is below the minimum 0.8",
    ),
    ErrorCode(
        "policy_not_found",
        404,
        "no approval policy with that name",
        "`GET /v1/policies` lists them",
        "policy {name!r} does not exist",
    ),
    ErrorCode(
        "no_change",
        409,
        "the alias already points at that version",
        "nothing to do",
        "alias {alias!r} already points at version {version}",
    ),
    ErrorCode(
        "duplicate_request",
        409,
        "the same promotion is already pending (`existing_id`)",
        "decide (or wait for) the pending request",
        "request {request_id} for this promotion is already pending",
    ),
    ErrorCode(
        "promotion_not_found",
        404,
        "no promotion request with that id",
        "`GET /v1/promotions` lists them; an empty id means the request that should have created it failed",
        "promotion request {request_id!r} does not exist",
    ),
    ErrorCode(
        "not_pending",
        409,
        "the request was already decided (requests are decided once)",
        "file a new request if the promotion is still wanted",
        "request {request_id} is {status}; it can no longer be decided",
    ),
    ErrorCode(
        "promotion_expired",
        409,
        "the request stayed pending longer than `REGISTRY_PROMOTION_TTL_S`",
        "file a new request",
        "request {request_id} is expired; it can no longer be decided",
    ),
    # --- MLflow behind the registry
    ErrorCode(
        "conflict",
        409,
        "MLflow refused: the object already exists",
        "use the existing object, or another name",
        "MLflow: {reason}",
    ),
    ErrorCode(
        "mlflow_error",
        502,
        "MLflow answered an error the registry does not map",
        "`make logs S=mlflow`; the message is MLflow's",
        "MLflow: {reason}",
    ),
    ErrorCode(
        "mlflow_unavailable",
        503,
        "MLflow does not answer",
        "`curl -s http://127.0.0.1:5000/health`; `make logs S=mlflow`",
        "MLflow at {uri} is not answering",
    ),
    ErrorCode(
        "artifact_store_full",
        507,
        "MLflow could not store an artifact (a model version's manifest, a dataset file): its artifact store is full "
        "or not writable; nothing was registered",
        "free space where MLflow keeps artifacts (`--artifacts-destination`, .llmops/data/mlflow/artifacts by "
        "default), then retry; no restart is needed",
        "MLflow could not store the artifact: its artifact store is full or not writable; free space there and retry",
    ),
)
