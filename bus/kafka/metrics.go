package kafka

import (
	"reflect"

	"github.com/rcrowley/go-metrics"
)

// noMetrics is the go-metrics registry of the driver's sarama clients
// unless the URL sets sarama_metrics=true: it keeps nothing and hands out
// no-op meters, counters, gauges and histograms. sarama updates its
// metrics on every request and response (the histograms are
// exponentially decaying samples kept in a heap), which costs a producer
// more CPU than this driver's own work per message, for figures that an
// application exporting OpenTelemetry never reads. Unlike
// metrics.UseNilMetrics it changes nothing outside this driver's clients.
type noMetrics struct{}

var _ metrics.Registry = noMetrics{}

func (noMetrics) Each(func(string, any))            {}
func (noMetrics) Get(string) any                    { return nil }
func (noMetrics) GetAll() map[string]map[string]any { return nil }
func (noMetrics) Register(string, any) error        { return nil }
func (noMetrics) RunHealthchecks()                  {}
func (noMetrics) Unregister(string)                 {}
func (noMetrics) UnregisterAll()                    {}

// GetOrRegister returns the no-op metric of the kind i makes (a metric, or
// a function returning one). A kind it does not know is made by i, and
// not kept.
func (noMetrics) GetOrRegister(_ string, i any) any {
	switch i.(type) {
	case func() metrics.Meter, metrics.Meter:
		return metrics.NilMeter{}
	case func() metrics.Counter, metrics.Counter:
		return metrics.NilCounter{}
	case func() metrics.Gauge, metrics.Gauge:
		return metrics.NilGauge{}
	case func() metrics.GaugeFloat64, metrics.GaugeFloat64:
		return metrics.NilGaugeFloat64{}
	case func() metrics.Histogram, metrics.Histogram:
		return metrics.NilHistogram{}
	case func() metrics.Timer, metrics.Timer:
		return metrics.NilTimer{}
	}
	if v := reflect.ValueOf(i); v.Kind() == reflect.Func && v.Type().NumIn() == 0 && v.Type().NumOut() == 1 {
		return v.Call(nil)[0].Interface()
	}
	return i
}
