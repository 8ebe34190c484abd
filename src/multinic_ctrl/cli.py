"""Command line: `multinic-ctrl [run|operator|migrate|plan|version]`.

Configuration errors exit with status 2 and one line naming the variable or flag to fix, the convention of
argparse itself, so scripts and humans can tell "you configured me wrong" from "something failed" (1).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import NoReturn

from multinic_ctrl import __version__
from multinic_ctrl.settings import Settings, SettingsError, load_settings

PROG = "multinic-ctrl"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_common(parser: argparse.ArgumentParser) -> None:
    db = parser.add_argument_group("database (flags override DB_* environment variables)")
    db.add_argument("--db-host", help="MariaDB host [env DB_HOST, default 110.0.0.101]")
    db.add_argument("--db-port", help="MariaDB port [env DB_PORT, default 30306]")
    db.add_argument("--db-user", help="MariaDB user [env DB_USER, default multinic]")
    db.add_argument("--db-name", help="database name [env DB_NAME, default multinic]")
    db.add_argument("--db-password-file", help="file holding the password [env DB_PASSWORD_FILE; or DB_PASSWORD]")
    db.add_argument("--db-pool-size", help="maximum pooled connections [env DB_POOL_SIZE, default 10]")
    db.add_argument(
        "--db-statement-timeout", help="bound on each database round trip, e.g. 10s [env DB_STATEMENT_TIMEOUT]"
    )
    db.add_argument(
        "--db-transaction-timeout", help="bound on a whole transaction, e.g. 30s [env DB_TRANSACTION_TIMEOUT]"
    )
    db.add_argument(
        "--db-ssl-mode",
        help="disabled, required (encrypted, unverified), verify-ca, verify-identity [env DB_SSL_MODE; default "
        "verify-identity with a CA, else disabled]",
    )
    db.add_argument("--db-ssl-ca", help="CA bundle for MariaDB TLS; enables TLS [env DB_SSL_CA]")
    db.add_argument("--db-ssl-cert", help="client certificate for MariaDB TLS [env DB_SSL_CERT]")
    db.add_argument("--db-ssl-key", help="private key of --db-ssl-cert (unencrypted PEM) [env DB_SSL_KEY]")
    obs = parser.add_argument_group("observability")
    obs.add_argument("--probe-port", help="port for /healthz, /readyz, /metrics [env PROBE_PORT, default 8082]")
    obs.add_argument("--probe-address", help="bind address for the probe server [env PROBE_ADDRESS, default 0.0.0.0]")
    obs.add_argument("--log-format", help="json or console [env LOG_FORMAT; json in cluster, console locally]")
    obs.add_argument("--log-level", help="debug, info, warning, error [env LOG_LEVEL, default info]")
    kube = parser.add_argument_group("kubernetes")
    kube.add_argument("--kubeconfig", help="kubeconfig path; in-cluster config when absent [env KUBECONFIG]")
    kube.add_argument("--namespaces", help="comma-separated namespaces to watch; all when empty [env WATCH_NAMESPACES]")


def _add_controller(parser: argparse.ArgumentParser) -> None:
    ctl = parser.add_argument_group("controller")
    ctl.add_argument("--workers", help="concurrent reconciles [env CONTROLLER_WORKERS, default 4]")
    ctl.add_argument("--resync", help="immediate mode's periodic OpenStack re-read [env RESYNC_INTERVAL, 30s]")
    ctl.add_argument(
        "--openstack-coalesce-window",
        help="how long an observation waits for configs of the same credentials to join it; 0: off "
        "[env OPENSTACK_COALESCE_WINDOW, 50ms]",
    )
    ctl.add_argument("--error-retry", help="retry interval after configuration errors [env ERROR_RETRY_INTERVAL, 1m]")
    ctl.add_argument(
        "--trigger-from",
        help="NAMESPACE/NAME of the MultiNicOperator whose spec.reconcileTrigger applies [env TRIGGER_FROM; "
        "default: immediate]",
    )
    ctl.add_argument("--trigger-token-file", help="bearer token for POST /trigger [env TRIGGER_TOKEN_FILE]")
    ctl.add_argument(
        "--leader-elect",
        help="true/false: elect one active replica [env LEADER_ELECT; default true in cluster, false locally]",
    )
    ctl.add_argument("--leader-election-namespace", help="namespace of the Lease [env LEADER_ELECTION_NAMESPACE]")
    ctl.add_argument("--reconcile-timeout", help="deadline of one reconcile, e.g. 150s [env RECONCILE_TIMEOUT]")
    ctl.add_argument(
        "--stall-timeout", help="/healthz fails after this long without progress on queued work [env STALL_TIMEOUT, 5m]"
    )


def _add_operator(parser: argparse.ArgumentParser) -> None:
    op = parser.add_argument_group("operator (needs no database settings)")
    op.add_argument(
        "--operator-namespaces",
        help="comma-separated namespaces whose MultiNicOperators are reconciled; all when empty "
        "[env OPERATOR_NAMESPACES]",
    )
    op.add_argument("--operator-workers", help="concurrent reconciles [env OPERATOR_WORKERS, default 2]")
    op.add_argument("--operator-resync", help="periodic re-check, e.g. 60s [env OPERATOR_RESYNC_INTERVAL, 1m]")
    op.add_argument(
        "--leader-elect",
        help="true/false: elect one active replica (Lease multinic-operator) [env LEADER_ELECT; default true in "
        "cluster, false locally]",
    )
    op.add_argument("--leader-election-namespace", help="namespace of the Lease [env LEADER_ELECTION_NAMESPACE]")
    op.add_argument(
        "--webhook",
        help="true/false: serve the protection webhook vprotection.multinic.example.com [env OPERATOR_WEBHOOK; "
        "default true in cluster or with --webhook-url, false locally]",
    )
    op.add_argument("--webhook-port", help="HTTPS port of the webhook [env WEBHOOK_PORT, default 9443]")
    op.add_argument(
        "--webhook-url",
        help="clientConfig.url for the apiserver instead of the Service, e.g. https://127.0.0.1:9443/validate "
        "(local runs, tests) [env WEBHOOK_URL]",
    )


def _add_openstack(parser: argparse.ArgumentParser) -> None:
    """Every command that talks to OpenStack takes the same TLS options (`plan` must see what `run` sees)."""
    ost = parser.add_argument_group("openstack")
    ost.add_argument("--openstack-ca-bundle", help="CA bundle for OpenStack TLS [env OPENSTACK_CA_BUNDLE]")
    ost.add_argument("--openstack-insecure", help="true: skip OpenStack TLS verification [env OPENSTACK_INSECURE]")
    ost.add_argument(
        "--openstack-allowed-urls",
        help="comma-separated endpoint patterns credentials may be sent to, e.g. https://*.cloud.example "
        "[env OPENSTACK_ALLOWED_URLS; default: any]",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description=(
            "MultiNic controller: reconciles OpenstackConfig resources into the MariaDB rows the MultiNic node "
            "agent reads, and (as `operator`) runs and protects the controller and its database."
        ),
        epilog="Run `%(prog)s COMMAND --help` for a command's options. Without a command, `run` is assumed.",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    run = sub.add_parser("run", help="run the OpenstackConfig controller (default)")
    _add_common(run)
    _add_controller(run)
    _add_openstack(run)
    operator = sub.add_parser("operator", help="run the MultiNicOperator operator")
    _add_common(operator)
    _add_operator(operator)
    migrate = sub.add_parser("migrate", help="create or upgrade the database schema (idempotent, concurrency-safe)")
    _add_common(migrate)
    plan = sub.add_parser("plan", help="show the row changes a reconcile of a config file would make; writes nothing")
    plan.add_argument("-f", "--filename", required=True, help="YAML file holding one OpenstackConfig")
    plan.add_argument("-n", "--namespace", help="namespace of the config (default: its metadata or 'default')")
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text", help="output format")
    _add_common(plan)
    _add_openstack(plan)
    sub.add_parser("version", help="print the version")
    return parser


def _settings_or_exit(args: argparse.Namespace) -> Settings:
    from multinic_ctrl.openstack import EndpointPolicy, InvalidPattern

    try:
        settings = load_settings(vars(args))
        try:
            EndpointPolicy.parse(settings.controller.openstack_allowed_urls)
        except InvalidPattern as exc:
            raise SettingsError("OPENSTACK_ALLOWED_URLS", str(exc)) from None
        return settings
    except SettingsError as exc:
        sys.stderr.write(f"{PROG}: error: {exc}\n")
        raise SystemExit(2) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from multinic_ctrl import lean_imports

    lean_imports.install()  # before anything imports kubernetes_asyncio: 30 MiB less per process
    parser = build_parser()
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv = ["run", *argv]
    args = parser.parse_args(argv)
    if args.command == "version":
        print(f"{PROG} {__version__}")
        return 0
    settings = _settings_or_exit(args)

    from multinic_ctrl.logs import configure_logging

    configure_logging(settings.log_format, settings.log_level, settings.secrets())
    from multinic_ctrl import app

    if args.command == "migrate":
        return asyncio.run(app.run_migrate(settings))
    if args.command == "plan":
        return asyncio.run(app.run_plan(settings, args.filename, args.namespace, args.output == "json"))
    if args.command == "operator":
        return asyncio.run(app.run_operator(settings))
    return asyncio.run(app.run_controller(settings))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
