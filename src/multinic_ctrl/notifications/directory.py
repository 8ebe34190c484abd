"""Which configs observe which OpenStack project: the index a notification is resolved through.

Fed by the reconciler: each time it resolves a config's credentials it records the project the config's
token is scoped to (the Keystone-issued project ID once a token is cached, else the `projectID` the
credentials ask for - Keystone issues no token for any other). A config is in one project at a time;
recording it again under another moves it. Forgotten when the config is deleted. Lookups and updates are
O(1) per config; memory is one entry per config.
"""

from __future__ import annotations


class ProjectDirectory:
    def __init__(self) -> None:
        self._project_of: dict[str, str] = {}
        self._configs: dict[str, set[str]] = {}

    def record(self, key: str, project_id: str) -> None:
        previous = self._project_of.get(key)
        if previous == project_id:
            return
        if previous is not None:
            self._discard(key, previous)
        self._project_of[key] = project_id
        self._configs.setdefault(project_id, set()).add(key)

    def forget(self, key: str) -> None:
        previous = self._project_of.pop(key, None)
        if previous is not None:
            self._discard(key, previous)

    def configs(self, project_id: str) -> frozenset[str]:
        return frozenset(self._configs.get(project_id, ()))

    def project_of(self, key: str) -> str | None:
        return self._project_of.get(key)

    def __contains__(self, project_id: object) -> bool:
        return project_id in self._configs

    def __len__(self) -> int:
        return len(self._project_of)

    def _discard(self, key: str, project_id: str) -> None:
        members = self._configs.get(project_id)
        if members is not None:
            members.discard(key)
            if not members:
                del self._configs[project_id]
