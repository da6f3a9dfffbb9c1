package store

import (
	"fmt"
	"strings"

	"github.com/xueliang/xl/central/internal/order"
)

// CollectStats runs the grouped queries of Stats through query, which runs
// one SQL statement returning (key, count) rows and calls add for each.
// cardExpr is the dialect's expression for an order's card name (from its
// JSON data, 'none' when it has none).
func CollectStats(query func(q string, add func(key string, n int)) error, cardExpr string) (Stats, error) {
	st := Stats{Incidents: Counts{}, Orders: Counts{}, Cards: Counts{}, Agents: Counts{}, Egress: Counts{}}
	var inactive []string
	for _, s := range order.States() {
		if !s.Active() {
			inactive = append(inactive, "'"+string(s)+"'")
		}
	}
	for _, q := range []struct {
		sql string
		to  Counts
	}{
		{`SELECT state, count(*) FROM incidents GROUP BY state`, st.Incidents},
		{`SELECT state, count(*) FROM orders GROUP BY state`, st.Orders},
		{fmt.Sprintf(`SELECT %s, count(*) FROM orders WHERE state NOT IN (%s) GROUP BY 1`, cardExpr, strings.Join(inactive, ", ")), st.Cards},
		{`SELECT state, count(*) FROM agents GROUP BY state`, st.Agents},
		{`SELECT state, count(*) FROM egress GROUP BY state`, st.Egress},
	} {
		to := q.to
		if err := query(q.sql, func(k string, n int) { to[k] += n }); err != nil {
			return Stats{}, err
		}
	}
	return st, nil
}
