// Package apiconv is the one place that converts between the daemon API's
// messages (proto/*/v1) and berth's own types (content, snapshots, images,
// containers, leases, gc, events, mount, images/progress). The daemon's
// services, the snapshot proxy and the client library all use it, so a
// field added to a message is converted in one place for both ends.
//
// Conventions:
//   - XToProto and XFromProto are inverses for every field the message
//     carries. A nil message converts to the zero value.
//   - A zero time is sent as an unset timestamp only where the message
//     documents that (images, leases, snapshots); elsewhere it is sent as
//     is, as before this package existed, so that the wire stays the same.
//   - Maps and slices are shared, not copied: a message is marshalled
//     right after it is built, and a converted value is the caller's.
//
// It imports no store and no service: linking it costs a client only the
// generated API code it links anyway.
package apiconv
