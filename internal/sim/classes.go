package sim

import (
	"strconv"
	"strings"
)

// class is an AMI read or write class bit, with Asterisk's numbering (manager.h EVENT_FLAG_*), so a
// numeric Events mask means what it means to Asterisk.
type class uint32

const (
	classSystem    class = 1 << 0
	classCall      class = 1 << 1
	classLog       class = 1 << 2
	classVerbose   class = 1 << 3
	classCommand   class = 1 << 4
	classAgent     class = 1 << 5
	classUser      class = 1 << 6
	classConfig    class = 1 << 7
	classDTMF      class = 1 << 8
	classReporting class = 1 << 9
	classCDR       class = 1 << 10
	classDialplan  class = 1 << 11
	classOriginate class = 1 << 12
	classAGI       class = 1 << 13
	classCC        class = 1 << 14
	classAOC       class = 1 << 15
	classTest      class = 1 << 16
	classSecurity  class = 1 << 17
	classMessage   class = 1 << 18

	classAll class = 1<<19 - 1
)

var classNames = []struct {
	name string
	bit  class
}{
	{"system", classSystem}, {"call", classCall}, {"log", classLog}, {"verbose", classVerbose},
	{"command", classCommand}, {"agent", classAgent}, {"user", classUser}, {"config", classConfig},
	{"dtmf", classDTMF}, {"reporting", classReporting}, {"cdr", classCDR}, {"dialplan", classDialplan},
	{"originate", classOriginate}, {"agi", classAGI}, {"cc", classCC}, {"aoc", classAOC},
	{"test", classTest}, {"security", classSecurity}, {"message", classMessage},
}

// privilege is the Privilege header Asterisk puts on an event of this class: "call,all".
func (c class) privilege() string {
	var parts []string
	for _, cn := range classNames {
		if c&cn.bit != 0 {
			parts = append(parts, cn.name)
		}
	}
	return strings.Join(append(parts, "all"), ",")
}

// parseEventMask reads an Events value the way Asterisk's strings_to_mask does: on/yes/true is
// everything, off/no/false is nothing, a number is a raw mask, otherwise a comma list of class
// names ("call,system"). ok is false for an empty value.
func parseEventMask(v string) (mask class, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	switch strings.ToLower(v) {
	case "on", "yes", "true", "y", "t", "1":
		return classAll, true
	case "off", "no", "false", "n", "f", "0":
		return 0, true
	}
	if n, err := strconv.ParseUint(v, 10, 32); err == nil {
		return class(n) & classAll, true
	}
	for _, part := range strings.Split(v, ",") {
		part = strings.ToLower(strings.TrimSpace(part))
		if part == "all" {
			mask |= classAll
			continue
		}
		for _, cn := range classNames {
			if cn.name == part {
				mask |= cn.bit
			}
		}
	}
	return mask, true
}
