package caddymodule

import "testing"

func TestDecisionCounter_IsTheCounterOfItsLabels(t *testing.T) {
	for _, l := range []decisionLabels{{"allow", "ok", 12}, {"deny", "invalid_token", 0}, {"allow", "ok", 12}, {"allow", "ok", 13}} {
		if got, want := decisionCounter(l), metrics.decisions.WithLabelValues(l.outcome, l.reason, ruleLabel(l.rule)); got != want {
			t.Errorf("%v: a counter of other labels", l)
		}
	}
}
