"""Tests of scripts/deploy_check.py: it must find what it is there to find.
Run by scripts/deploy-check.sh (`python -m unittest discover -s scripts -p
'test_deploy_check.py'`) in the venv with the pinned validators."""

import copy
import tempfile
import textwrap
import unittest
from pathlib import Path

import yaml

import deploy_check as dc

METRICS = textwrap.dedent(
    """\
    # HELP chatpulse_votes Chat messages through the vote pipeline by outcome.
    # TYPE chatpulse_votes counter
    chatpulse_votes_total{outcome="applied"} 3
    # HELP chatpulse_tick_duration_seconds Duration of one tick.
    # TYPE chatpulse_tick_duration_seconds histogram
    chatpulse_tick_duration_seconds_sum 0.5
    chatpulse_tick_duration_seconds_count 10
    chatpulse_tick_duration_seconds_bucket{le="0.1"} 10
    # HELP chatpulse_leader 1 while leading.
    # TYPE chatpulse_leader gauge
    chatpulse_leader 1
    # EOF
    """
)

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "x", "namespace": "n"},
    "spec": {
        "replicas": 3,
        "selector": {"matchLabels": {"app": "x"}},
        "template": {
            "metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "x", "image": "x:1", "ports": [{"name": "http", "containerPort": 8080}]}]},
        },
    },
}


class PromQL(unittest.TestCase):
    def test_names_metrics_but_not_functions_labels_values_or_durations(self):
        expr = (
            'histogram_quantile(0.99, sum by (le, route) (rate(chatpulse_http_request_duration_seconds_bucket'
            '{route="/webhooks/eventsub", status=~"5.."}[$__rate_interval]))) > 1e-3 '
            "and on (route) max without (instance) (chatpulse_leader offset 5m) == bool 1"
        )
        self.assertEqual(
            dc.promql_metric_names(expr), {"chatpulse_http_request_duration_seconds_bucket", "chatpulse_leader"}
        )

    def test_a_label_value_that_looks_like_a_metric_is_not_one(self):
        self.assertEqual(dc.promql_metric_names('sum(up{job="chatpulse_votes_total"})'), {"up"})

    def test_counters_are_exported_with_total_and_histograms_with_their_series(self):
        names, families = dc.exported_names(METRICS)
        self.assertIn("chatpulse_votes_total", names)
        self.assertNotIn("chatpulse_votes", names)
        self.assertTrue({"chatpulse_tick_duration_seconds_bucket", "chatpulse_tick_duration_seconds_count"} <= names)
        self.assertIn("chatpulse_leader", names)
        self.assertEqual(families, {"chatpulse_votes", "chatpulse_tick_duration_seconds", "chatpulse_leader"})

    def test_a_misspelt_or_unsuffixed_metric_is_reported(self):
        exported, _ = dc.exported_names(METRICS)
        problems = dc.unknown_metrics(
            {"a": "sum(rate(chatpulse_votes_total[5m]))", "b": "rate(chatpulse_votes[5m])", "c": "chatpulse_leadr"},
            exported,
        )
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any("chatpulse_votes " in p for p in problems))
        self.assertTrue(any("chatpulse_leadr" in p for p in problems))

    def test_dashboard_queries_are_found_in_nested_rows(self):
        dashboard = {"panels": [{"title": "row", "panels": [{"title": "p", "targets": [{"refId": "A", "expr": "x"}]}]}]}
        self.assertEqual(dc.dashboard_exprs(dashboard), {"panel 'p' A": "x"})

    def test_registered_families_are_read_from_the_metrics_module(self):
        source = textwrap.dedent(
            """\
            pub struct Metrics {
                pub votes: Family<OutcomeLabels, Counter>,
                pub tick: Histogram,
                pub leader: Gauge,
            }
            let r = registry.sub_registry_with_prefix("chatpulse");
            r.register("votes", "Votes (applied, error)", m.votes.clone());
            r.register(
                "tick_duration_seconds",
                "Duration of one \\"tick\\"",
                m.tick.clone(),
            );
            r.register("leader", "1 while leading", m.leader.clone());
            """
        )
        families = dc.registered_families(source)
        self.assertEqual(
            families,
            {"chatpulse_votes": "counter", "chatpulse_tick_duration_seconds": "histogram", "chatpulse_leader": "gauge"},
        )
        self.assertIn("chatpulse_votes_total", dc.series_of(families))

    def test_a_registration_the_reader_cannot_follow_fails_loudly(self):
        source = 'pub votes: Counter,\nr.register("votes", "v", m.votes.clone());\nr.register(NAME, "x", other);\n'
        with self.assertRaises(RuntimeError):
            dc.registered_families(source)


class Kubernetes(unittest.TestCase):
    versions = ["1.30.0"]

    def test_a_valid_deployment_passes(self):
        self.assertEqual(dc.validate_object(copy.deepcopy(DEPLOYMENT), self.versions), [])

    def test_an_unknown_field_fails_strict_validation(self):
        doc = copy.deepcopy(DEPLOYMENT)
        doc["spec"]["replica"] = 3
        problems = dc.validate_object(doc, self.versions)
        self.assertTrue(problems and "replica" in problems[0], problems)

    def test_a_wrong_type_fails(self):
        doc = copy.deepcopy(DEPLOYMENT)
        doc["spec"]["replicas"] = "three"
        self.assertTrue(dc.validate_object(doc, self.versions))

    def test_an_unknown_kind_fails(self):
        doc = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
        self.assertTrue(dc.validate_object(doc, self.versions))

    def test_a_service_monitor_needs_endpoints_with_a_port(self):
        doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor", "metadata": {"name": "m"},
               "spec": {"selector": {"matchLabels": {"a": "b"}}, "endpoints": [{"path": "/metrics", "interval": "15x"}]}}
        problems = dc.validate_object(doc, self.versions)
        self.assertTrue(any("named port" in p for p in problems), problems)
        self.assertTrue(any("not a duration" in p for p in problems), problems)

    def test_a_rule_needs_an_expression_and_one_of_alert_or_record(self):
        doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule", "metadata": {"name": "r"},
               "spec": {"groups": [{"name": "g", "rules": [{"alert": "A", "record": "b"}, {"alert": "C", "expr": "up",
                                                                                         "severity": "x"}]}]}}
        problems = dc.validate_object(doc, self.versions)
        self.assertTrue(any("exactly one of alert and record" in p for p in problems), problems)
        self.assertTrue(any("expr is required" in p for p in problems), problems)
        self.assertTrue(any("unknown field 'severity'" in p for p in problems), problems)

    def test_a_duplicate_key_is_refused(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
            f.write("a: 1\nb: 2\na: 3\n")
            f.flush()
            with self.assertRaises(yaml.YAMLError):
                dc.load_yaml(Path(f.name))

    def test_the_grace_period_must_cover_the_prestop_pause_and_the_shutdown(self):
        objects = self._objects()
        self.assertEqual(dc.check_k8s_references(objects, self._secret(), 65536), [])
        deployment = next(d for _, d in objects if d["kind"] == "Deployment")
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 40
        problems = dc.check_k8s_references(objects, self._secret(), 65536)
        self.assertTrue(any("terminationGracePeriodSeconds" in p for p in problems), problems)

    def test_a_secret_in_the_config_map_or_a_filled_template_is_refused(self):
        objects = self._objects()
        next(d for _, d in objects if d["kind"] == "ConfigMap")["data"]["WEBHOOK_SECRET"] = "x"
        secret = self._secret()
        secret["stringData"]["SESSION_SECRET"] = "hunter2"
        problems = dc.check_k8s_references(objects, secret, 65536)
        self.assertTrue(any("WEBHOOK_SECRET is a secret" in p for p in problems), problems)
        self.assertTrue(any("SESSION_SECRET must be empty" in p for p in problems), problems)

    def test_the_ingress_body_limit_follows_the_webhook_limit(self):
        problems = dc.check_k8s_references(self._objects(), self._secret(), 32 * 1024)
        self.assertTrue(any("proxy-body-size" in p for p in problems), problems)

    def _objects(self):
        k8s = Path(__file__).resolve().parent.parent / "deploy/k8s"
        return [(str(p), d) for p in sorted(k8s.glob("*.yaml")) for d in dc.load_yaml_documents(p)]

    def _secret(self):
        return dc.load_yaml(Path(__file__).resolve().parent.parent / "deploy/k8s/secrets/secret.yaml")


class Docker(unittest.TestCase):
    def test_dockerignore_patterns(self):
        patterns = ["target/", "**/*.md", "!LICENSE.md", "deploy/", "!deploy/docker/skeleton.sh", ".env*", "!.env.example"]
        self.assertTrue(dc.dockerignore_excludes(patterns, "target/debug/chatpulse"))
        self.assertTrue(dc.dockerignore_excludes(patterns, "docs/operations/deploy.md"))
        self.assertTrue(dc.dockerignore_excludes(patterns, "README.md"))
        self.assertFalse(dc.dockerignore_excludes(patterns, "LICENSE.md"))
        self.assertTrue(dc.dockerignore_excludes(patterns, "deploy/k8s/00-namespace.yaml"))
        self.assertFalse(dc.dockerignore_excludes(patterns, "deploy/docker/skeleton.sh"))
        self.assertTrue(dc.dockerignore_excludes(patterns, ".env"))
        self.assertFalse(dc.dockerignore_excludes(patterns, ".env.example"))
        self.assertFalse(dc.dockerignore_excludes(patterns, "src/main.rs"))

    def test_stages_are_read(self):
        text = "FROM rust:1 AS build\nRUN x\nFROM debian:12 AS runtime\nFROM runtime AS production\n"
        self.assertEqual(dc.dockerfile_stages(text), ["build", "runtime", "production"])


class Compose(unittest.TestCase):
    def test_missing_files_stages_and_services_are_reported(self):
        with tempfile.TemporaryDirectory() as d:
            root = Path(d)
            (root / "Dockerfile").write_text("FROM debian:12 AS production\n")
            (root / "here.cfg").write_text("")
            compose = {
                "services": {
                    "a": {"build": {"context": ".", "target": "production"}, "volumes": ["./missing.cfg:/x:ro"]},
                    "b": {"build": {"context": ".", "target": "nope"}, "volumes": ["./here.cfg:/y", "data:/z"]},
                    "c": {"image": "x", "depends_on": ["ghost"], "network_mode": "service:phantom"},
                    "d": {"volumes": ["./here.cfg:/y"]},
                }
            }
            (root / "compose.yaml").write_text(yaml.safe_dump(compose))
            problems = dc.check_compose(root / "compose.yaml")
            text = "\n".join(problems)
            self.assertIn("missing.cfg does not exist", text)
            self.assertIn("target nope is not a stage", text)
            self.assertIn("volume data is not declared", text)
            self.assertIn("depends_on ghost", text)
            self.assertIn("network_mode names an unknown service", text)
            self.assertIn("service d: image or build is required", text)
            self.assertNotIn("here.cfg", text)


if __name__ == "__main__":
    unittest.main()
