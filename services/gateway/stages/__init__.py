"""The gateway's request path as stages, in order:

    authenticate -> admit -> check input -> cache -> route -> relay -> check output -> settle -> emit

`authenticate` and `admit` come first and produce the request's context (`RequestContext`); the stages after
them form the pipeline that `ProxyService` runs: each one's `pre` in order until one answers, then the `post`
hooks in reverse. `check output` runs inside `relay` (a stream is checked window by window as it is sent), and
`settle` (with `emit`) is the one record of a request, called exactly once by whichever stage ends it.
Each stage is one module, built once from its collaborators, and testable in-process with fakes.
"""

from services.gateway.stages.admit import Admit, status_of
from services.gateway.stages.authenticate import Authenticate
from services.gateway.stages.base import Answer, Background, Completed, RequestContext, Stage, Streaming
from services.gateway.stages.check_input import CheckInput
from services.gateway.stages.check_output import CheckOutput
from services.gateway.stages.emit import Emit
from services.gateway.stages.lookup import CacheLookup
from services.gateway.stages.relay import Relay
from services.gateway.stages.route import Route
from services.gateway.stages.settle import Settle

__all__ = [
    "Admit",
    "Answer",
    "Authenticate",
    "Background",
    "CacheLookup",
    "CheckInput",
    "CheckOutput",
    "Completed",
    "Emit",
    "Relay",
    "RequestContext",
    "Route",
    "Settle",
    "Stage",
    "Streaming",
    "status_of",
]
