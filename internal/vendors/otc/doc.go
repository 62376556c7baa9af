// Package otc is the Open Telekom Cloud ModelArts client.
package otc
