"""Who may do what: THE table of roles and the least role each route needs.

Roles follow Power BI's workspace roles, each holding the rights of the one below:

=============  ======================================================================
role           may
=============  ======================================================================
viewer         read datasets, rows, live feeds, dashboards; run executeQueries
contributor    also push rows
member         also create, change and delete datasets, dashboards, alerts, forwards,
               and share dashboards as read-only links
admin          also manage tokens (and anything this table does not name)
=============  ======================================================================

:data:`RULES` is read by the auth middleware (:mod:`pbistream.server.auth`), which
refuses a request whose token's role is below the route's, and by ``/openapi.json``,
which states each operation's role (``x-pbistream-role``). **Deny by default**: a
route that no rule matches needs ``admin``, so a route added without a rule is safe,
only too strict. Adding a route's role is one line in :data:`RULES`.

A template is a path with placeholders, each matching one path segment:

* ``{pbi}``: the Power BI API roots (``/v1.0/myorg``, ``/beta/myorg``, and both under
  ``/groups/{id}``), so one rule covers the four spellings of a REST endpoint;
* ``{dataset}`` / ``{dashboard}``: the dataset or dashboard the request is about. A
  token limited to some datasets (or a dashboard link) may only reach those;
* any other ``{name}``: a segment whose value does not matter for access.
"""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

__all__ = [
    "PUBLIC",
    "RULES",
    "Role",
    "Rule",
    "RuleMatch",
    "match_rule",
    "required_role",
    "role_name",
]


class Role(enum.IntEnum):
    """A workspace role; a higher role has every right of a lower one."""

    VIEWER = 1
    CONTRIBUTOR = 2
    MEMBER = 3
    ADMIN = 4

    @classmethod
    def parse(cls, text: str) -> Role:
        """``"viewer"`` → :attr:`VIEWER` (case-insensitive).

        Raises:
            ValueError: Not a role's name; the message lists the roles.
        """
        try:
            return cls[str(text).strip().upper()]
        except KeyError:
            names = ", ".join(r.label for r in cls)
            raise ValueError(f"role must be one of {names}, not {text!r}") from None

    @property
    def label(self) -> str:
        """The role's lower-case name (``viewer``), as the API and CLI spell it."""
        return self.name.lower()


#: The role of routes anyone may call (no token): ``/healthz``, ``/login``, the Push URL.
PUBLIC = None


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of the table: a method and path template, and the least role it needs.

    Attributes:
        method: ``GET``, ``POST``, ... or ``*`` for every method. ``GET`` covers ``HEAD``.
        template: The path template (see the module docstring).
        role: The least role, or :data:`PUBLIC`.
        lists: ``"datasets"`` or ``"dashboards"``: the answer's ``value`` list is cut
            down to what a limited token may see.
        query_datasets: The query parameter that names datasets (``/api/live``).
        stream: An endpoint that never ends (a live feed): it is cut off when its
            token is revoked or expires.
        scoped_by_handler: The handler itself holds a limited token to its datasets
            (the dataset is in the body or the stored item, not the path), so a scoped
            token's writes there are not refused wholesale.
    """

    method: str
    template: str
    role: Role | None
    lists: str | None = None
    query_datasets: str | None = None
    stream: bool = False
    scoped_by_handler: bool = False

    @property
    def regex(self) -> re.Pattern[str]:
        """The template compiled; named groups ``dataset`` / ``dashboard``."""
        return _compile(self.template)


@functools.cache
def _compile(template: str) -> re.Pattern[str]:
    out = ""
    for part in re.split(r"(\{[^}]+\})", template):
        if part == "{pbi}":
            out += r"(?:/v1\.0|/beta)/myorg(?:/groups/[^/]+)?"
        elif part in ("{dataset}", "{dashboard}"):
            out += f"(?P<{part[1:-1]}>[^/]+)"
        elif part.startswith("{"):
            out += "[^/]+"
        else:
            out += re.escape(part)
    return re.compile(out + "/?")


V, C, M, A = Role.VIEWER, Role.CONTRIBUTOR, Role.MEMBER, Role.ADMIN

#: THE table. First match wins; no match means admin (deny by default).
RULES: tuple[Rule, ...] = (
    # --- anyone ------------------------------------------------------------------------
    Rule("GET", "/healthz", PUBLIC),
    Rule("GET", "/login", PUBLIC),
    Rule("POST", "/login", PUBLIC),  # the sign-in page's form (CSRF-checked itself)
    Rule("GET", "/", PUBLIC),  # redirects to /ui/
    Rule("GET", "/ui", PUBLIC),  # and /ui/: the shell, or a sign-in page
    # The streaming Push URL checks its own per-dataset key (or a contributor's token).
    Rule("POST", "/beta/{workspace}/datasets/{dataset}/rows", PUBLIC),
    # --- the Power BI push-dataset REST API ------------------------------------------------
    Rule("GET", "{pbi}/datasets", V, lists="datasets"),
    Rule("POST", "{pbi}/datasets", M),
    Rule("GET", "{pbi}/datasets/{dataset}", V),
    Rule("PATCH", "{pbi}/datasets/{dataset}", M),
    Rule("DELETE", "{pbi}/datasets/{dataset}", M),
    Rule("GET", "{pbi}/datasets/{dataset}/tables", V),
    Rule("PUT", "{pbi}/datasets/{dataset}/tables/{table}", M),
    Rule("POST", "{pbi}/datasets/{dataset}/tables/{table}/rows", C),
    Rule("DELETE", "{pbi}/datasets/{dataset}/tables/{table}/rows", M),
    Rule("POST", "{pbi}/datasets/{dataset}/executeQueries", V),
    Rule("GET", "{pbi}/datasets/{dataset}/refreshes", V),
    Rule("GET", "{pbi}/datasets/{dataset}/datasources", V),
    Rule("POST", "{pbi}/datasets/{dataset}/refreshes", C),
    Rule("GET", "{pbi}/dashboards", V, lists="dashboards"),
    Rule("POST", "{pbi}/dashboards", M),
    Rule("GET", "{pbi}/dashboards/{dashboard}", V),
    Rule("GET", "{pbi}/dashboards/{dashboard}/tiles", V),
    Rule("GET", "{pbi}/dashboards/{dashboard}/tiles/{tile}", V),
    # Workspaces (Power BI's Groups API).
    Rule("GET", "{pbi}/groups", V),
    Rule("POST", "{pbi}/groups", M),
    Rule("DELETE", "{pbi}/groups/{group}", M),
    # --- pbistream's own /api ---------------------------------------------------------
    Rule("GET", "/api/me", V),
    Rule("GET", "/api/datasets", V, lists="datasets"),
    Rule("GET", "/api/datasets/{dataset}", V),
    Rule("POST", "/api/datasets/{dataset}/rotate-key", M),
    Rule("GET", "/api/datasets/{dataset}/rows", V),
    Rule("GET", "/api/datasets/{dataset}/live", V, stream=True),
    Rule("GET", "/api/datasets/{dataset}/series", V),
    Rule("*", "/api/datasets/{dataset}/forward", M),
    Rule("*", "/api/datasets/{dataset}/forwards", M),
    Rule("GET", "/api/live", V, query_datasets="dataset", stream=True),
    Rule("GET", "/api/dashboards", V, lists="dashboards"),
    Rule("POST", "/api/dashboards", M),
    Rule("GET", "/api/dashboards/{dashboard}", V),
    Rule("PUT", "/api/dashboards/{dashboard}", M),
    Rule("DELETE", "/api/dashboards/{dashboard}", M),
    Rule("*", "/api/dashboards/{dashboard}/links", M),
    Rule("*", "/api/dashboards/{dashboard}/links/{link}", M),
    # Alert rules hold webhook URLs (often secrets themselves): members only, reads too.
    # A rule's dataset is in its body: the handlers hold a scoped token to its datasets.
    Rule("*", "/api/alerts", M, scoped_by_handler=True),
    Rule("*", "/api/alerts/{alert}", M, scoped_by_handler=True),
    Rule("*", "/api/alerts/{alert}/{action}", M),
    Rule("*", "/api/tokens", A),
    Rule("*", "/api/tokens/{token}", A),
    Rule("GET", "/metrics", V),
    Rule("GET", "/openapi.json", V),
)


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """The rule a request falls under, and the dataset or dashboard its path names."""

    rule: Rule | None
    dataset: str | None = None
    dashboard: str | None = None

    @property
    def role(self) -> Role | None:
        """The least role: the rule's, or admin when no rule matched."""
        return Role.ADMIN if self.rule is None else self.rule.role


def _method_matches(rule_method: str, method: str) -> bool:
    method = "GET" if method == "HEAD" else method
    return rule_method in ("*", method)


def match_rule(method: str, path: str) -> RuleMatch:
    """The rule for ``method path`` (a concrete path), or one with no rule (admin)."""
    method = method.upper()
    for rule in RULES:
        if not _method_matches(rule.method, method):
            continue
        found = rule.regex.fullmatch(path)
        if found is not None:
            groups = found.groupdict()
            return RuleMatch(rule, groups.get("dataset"), groups.get("dashboard"))
    return RuleMatch(None)


def required_role(method: str, path: str) -> Role | None:
    """The least role ``method path`` needs; None for a public route."""
    return match_rule(method, path).role


def role_name(role: Role | None) -> str:
    """``"viewer"`` ... ``"admin"``, or ``"public"``."""
    return "public" if role is None else role.label
