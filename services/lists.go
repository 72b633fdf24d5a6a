package services

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/berthrt/berth/errdefs"
)

// CheckListReply fails the unary List of service with
// errdefs.ErrResourceExhausted, naming ListStream, when its reply would
// not fit one ttrpc message.
func CheckListReply(service string, reply proto.Message) error {
	return errdefs.CheckReplySize(service+" List", reply, fmt.Sprintf("call %s ListStream, which sends the list in as many messages as it takes", service))
}
