// Package events is berth's event exchange: topics, envelopes, namespaces,
// filters, publish and subscribe. Topics are absolute paths in the
// containerd style ("/tasks/exit"); a topic always names the type of its
// payload.
//
// # Envelopes
//
// Every event travels in an Envelope: timestamp, namespace, topic and the
// payload as an Any. Publish takes the namespace from the context and
// stamps the time; Forward takes a whole envelope from a relay (a shim's
// task events) and checks it. A topic is "/" followed by one or more
// identifiers joined by "/", at most MaxTopicLength bytes; a payload is at
// most MaxEventSize bytes encoded.
//
// # Subscriptions
//
// A subscriber passes filters in the syntax of package filters over the
// envelope's fields (topic, namespace, event.<field>: see Envelope.Field)
// and receives the envelopes that match any of them. There is no implicit
// namespace: a subscriber that wants one says namespace==… in each filter.
//
// Invariants:
//   - A subscriber receives the events it matches in the order in which
//     the exchange accepted them, and all subscribers see one and the same
//     order: deliveries are serialized.
//   - Publish and Forward never wait for a subscriber, and one subscriber
//     never delays another: each has a buffer of its own
//     (DefaultSubscriberBuffer events, WithSubscriberBuffer to change it),
//     filled without blocking.
//   - Slow subscriber policy: a publisher that finds a subscriber's buffer
//     full drops the subscriber. The subscriber still receives, in order,
//     every event buffered before the one that did not fit; then its
//     error channel yields an error of class errdefs.ErrUnavailable and
//     closes. What it received is therefore always a gap-free
//     prefix of what it matched, and the error says that the rest is lost:
//     it must re-read the state it follows (List, task state) and
//     subscribe again. Dropping is chosen over discarding single events
//     because an event such as /tasks/exit must never vanish silently.
//   - Each subscription has exactly one goroutine, which ends when the
//     subscription's context is done, or once a dropped subscriber has
//     read its last buffered event. Ending it removes the subscriber from
//     the exchange; nothing is left behind.
//   - The end of a subscription is told on its error channel alone, as in
//     containerd: it yields the error, if any, and closes; the event
//     channel is never closed. Every event sent before the end has been
//     received by then (the event channel is unbuffered), so a subscriber
//     that selects on both channels misses neither events nor the error.
//   - The exchange keeps the most recent events it accepted (at most
//     HistoryLength events and HistoryBytes of payload) for
//     SubscribeSince, which replays the matching ones after a time and
//     then goes on live with no gap and no repeat: the history is read
//     and the subscriber registered under one lock. History lives in
//     memory: a daemon restart empties it.
//   - An exchange serves at most MaxSubscribers subscriptions at once;
//     Subscribe beyond that fails with errdefs.ErrUnavailable.
package events
