"""Monitoring as code for spex-monitor, rendered by scripts/build_dashboards.py.

Layers, each importing only those above it:

* ``promql``: metric families and the three query shapes (aggregated gauge, counter change, quantile);
* ``alerts``: the alert definitions, the one source of Prometheus rules and Grafana alert rules;
* ``panels``, ``infinity``: the panel vocabulary (time series, single number, the Infinity JSON query);
* ``families``, ``infrastructure``: the panels each metric family is read with, for either scope;
* ``layout``: what every dashboard shares (variables, links, rows, rendering);
* ``overview``, ``model``: one short file per dashboard;
* ``prometheus_rules``, ``grafana_alerting`` (with ``yamltext``): the alerts rendered for Prometheus and for
  Grafana's alerting (rules linked to their panels, example contact point and notification policy).
"""
