"""Who the caller is and what they may reach: scoped tokens, dashboard links, sessions.

* :mod:`~pbistream.server.access.gate`: turns a Bearer token or a session cookie into
  a :class:`~pbistream.server.access.gate.Principal` (role, datasets, dashboard), with a
  short cache, and cuts the live feeds of a grant that is revoked or expires;
* :mod:`~pbistream.server.access.scope`: what a token limited to some datasets (or a
  dashboard link) may see of a route that :mod:`pbistream.server.roles` lets it call;
* :mod:`~pbistream.server.access.tokens`: ``/api/tokens`` and ``/api/me``;
* :mod:`~pbistream.server.access.links`: ``/api/dashboards/{id}/links``.

The role table itself is :mod:`pbistream.server.roles`; the middleware that applies it
is :mod:`pbistream.server.auth`.
"""
