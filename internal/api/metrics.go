package api

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	jobs         *prometheus.CounterVec   // fun, outcome
	latency      *prometheus.HistogramVec // fun
	authFailures prometheus.Counter
	replies      *prometheus.CounterVec // HTTP reply code word
	deliveryErrs prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, queueDepth func() float64) (*metrics, error) {
	m := &metrics{
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "odoopbx", Subsystem: "api", Name: "jobs_total",
			Help: "Jobs run, by function and outcome (ok or the contract's error code).",
		}, []string{"fun", "outcome"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "odoopbx", Subsystem: "api", Name: "job_duration_seconds",
			Help:    "Time from a job's acceptance to its result, by function.",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"fun"}),
		authFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "odoopbx", Subsystem: "api", Name: "auth_failures_total",
			Help: "Requests with a missing or wrong x-token.",
		}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "odoopbx", Subsystem: "api", Name: "replies_total",
			Help: "HTTP replies by status word (accepted, done, bad_request, unauthorized, busy...).",
		}, []string{"status"}),
		deliveryErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "odoopbx", Subsystem: "api", Name: "result_enqueue_failures_total",
			Help: "Job results (callbacks, notifications) the delivery spool refused; they are lost.",
		}),
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "odoopbx", Subsystem: "api", Name: "queue_depth",
		Help: "Jobs accepted and waiting for a worker.",
	}, queueDepth)
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.jobs, m.latency, m.authFailures, m.replies, m.deliveryErrs, depth} {
		if err := reg.Register(c); err != nil {
			var already prometheus.AlreadyRegisteredError
			if errors.As(err, &already) {
				return nil, errors.New("api: metrics already registered (one job API per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}
