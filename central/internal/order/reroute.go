package order

import "fmt"

// Reroute is where a rejected order goes next.
type Reroute struct {
	Agency    string // the agency for the new order; empty when ToOfficer
	Role      Role   // the rejected order's role, taken over by the new order
	ToOfficer bool   // no candidate is left: the duty officer decides
	Why       string
}

// NextAgency chooses where a rejected order goes: the first of candidates
// (in order, e.g. the routing decision's re-route list) that has no order in
// the incident yet, other than a cancelled one. An agency that rejected, or
// holds another order of the incident, is never chosen twice. When no
// candidate is left the order goes back to the officer. incident holds the
// incident's orders, the rejected one included or not.
func NextAgency(rejected Order, candidates []string, incident []Order) (Reroute, error) {
	if rejected.State != StateRejected {
		return Reroute{}, fmt.Errorf("%w: order %s is %s", ErrNotRejected, rejected.ID, rejected.State)
	}
	taken := map[string]bool{rejected.AgencyID: true}
	for _, o := range incident {
		if o.State != StateCancelled {
			taken[o.AgencyID] = true
		}
	}
	for _, a := range candidates {
		if a != "" && !taken[a] {
			return Reroute{Agency: a, Role: rejected.Role,
				Why: fmt.Sprintf("%s rejected (%s): re-routed to %s", rejected.AgencyID, rejected.Reason, a)}, nil
		}
	}
	return Reroute{Role: rejected.Role, ToOfficer: true,
		Why: fmt.Sprintf("%s rejected (%s) and no other agency is left: back to the duty officer", rejected.AgencyID, rejected.Reason)}, nil
}
