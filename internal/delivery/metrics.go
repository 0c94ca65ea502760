package delivery

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	in, out, dead, refused, loginFailures prometheus.Counter
	failures                              *prometheus.CounterVec
	latency, callSeconds                  prometheus.Histogram
	busy, paused                          prometheus.Gauge
	collectors                            []prometheus.Collector
}

func newMetrics(e *Engine) *metrics {
	m := &metrics{
		in: prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_delivery_items_in_total",
			Help: "Items stored in the spool for delivery to Odoo."}),
		out: prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_delivery_items_out_total",
			Help: "Items Odoo accepted."}),
		dead: prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_delivery_dead_letters_total",
			Help: "Items moved to the dead letters (handler errors, past spool.max_age)."}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_delivery_refused_total",
			Help: "Items refused at enqueue (spool full, closed, or invalid)."}),
		loginFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "odoopbx_delivery_login_failures_total",
			Help: "Failed re-logins to Odoo while delivery was paused."}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "odoopbx_delivery_failures_total",
			Help: "Failed delivery attempts by kind (transient, auth, handler, missing_method, config)."}, []string{"kind"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "odoopbx_delivery_latency_seconds",
			Help:    "Time from an item's append (or its not-before time) to Odoo's acceptance.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 3600}}),
		callSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "odoopbx_delivery_call_seconds",
			Help: "Duration of successful execute_kw calls.", Buckets: prometheus.DefBuckets}),
		busy: prometheus.NewGauge(prometheus.GaugeOpts{Name: "odoopbx_delivery_lanes_busy",
			Help: "Lanes being delivered right now."}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Name: "odoopbx_delivery_paused",
			Help: "1 while every lane is paused because Odoo refuses the agent's login (alert on it)."}),
	}
	for _, k := range []string{"transient", "auth", "handler", "missing_method", "config"} {
		m.failures.WithLabelValues(k)
	}
	depth := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "odoopbx_delivery_queue_depth",
		Help: "Items waiting in the spool."}, func() float64 { return float64(e.cfg.Spool.Stats().Pending) })
	deadNow := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "odoopbx_spool_dead_items",
		Help: "Dead letters in the spool."}, func() float64 { return float64(e.cfg.Spool.Stats().Dead) })
	bytes := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "odoopbx_spool_bytes",
		Help: "Bytes stored in the spool (pending and dead), bounded by spool.max_bytes."}, func() float64 { return float64(e.cfg.Spool.Stats().Bytes) })
	m.collectors = []prometheus.Collector{m.in, m.out, m.dead, m.refused, m.loginFailures, m.failures, m.latency,
		m.callSeconds, m.busy, m.paused, depth, deadNow, bytes}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	var errs []error
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
