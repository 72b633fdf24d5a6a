// Package events is berth's event exchange: topics, envelopes, namespaces,
// filters, publish and subscribe. Topics are absolute paths in the
// containerd style ("/tasks/exit"); a topic always names the type of its
// payload.
package events
