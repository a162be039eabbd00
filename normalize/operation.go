package normalize

import "strings"

// Operation is one write call of the Context Services 8.5 service-event
// API. Each has its event type, and so its field rules (see fields.go).
type Operation uint8

// The operations, in the order of the README's table.
const (
	OpServiceStart     Operation = iota // POST /services/start: Service Start Event
	OpServiceEnd                        // POST /services/{sid}/end: Service End Event
	OpStateStart                        // POST /services/{sid}/states/start: State Start Event
	OpStateEnd                          // POST /services/{sid}/states/{state_id}/end: State End Event
	OpStateTransition                   // POST /services/{sid}/states/transition: State Transition Event
	OpTaskStart                         // POST /services/{sid}/tasks/start: Task Start Event
	OpTaskEnd                           // POST /services/{sid}/tasks/{task_id}/end: Task End Event
	OpServiceAssociate                  // POST /customers/{customer_id}/services/{sid}: Service Start Event fields
	OpExtensionUpdate                   // PUT …/extensions/{name}[/merge]: any JSON object or array

	NumOperations // number of operations; not an operation
)

// operationNames are the names of the operations, in their order above.
var operationNames = [NumOperations]string{"service.start", "service.end", "state.start", "state.end",
	"state.transition", "task.start", "task.end", "service.associate", "extension.update"}

// String returns the operation's name, e.g. "task.end": the config's
// operations option, the journal's "operation" member and the metrics'
// operation label.
func (o Operation) String() string { return nameOf(operationNames[:], o) }

// ParseOperation returns the operation named name ("task.end", …).
func ParseOperation(name string) (Operation, bool) {
	for o, n := range operationNames {
		if n == name {
			return Operation(o), true
		}
	}
	return 0, false
}

// OperationNames lists every operation's name, comma-separated, for
// messages.
func OperationNames() string {
	return strings.Join(operationNames[:], ", ")
}

// IsEnd reports whether the operation ends a service, a state or a task:
// the server answers it 204 with no body, so a gateway may store it and
// answer on the server's behalf. The others need the server's answer.
func (o Operation) IsEnd() bool {
	return o == OpServiceEnd || o == OpStateEnd || o == OpTaskEnd
}
