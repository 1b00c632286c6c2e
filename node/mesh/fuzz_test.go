package mesh

import (
	"testing"
	"time"

	"github.com/elock/elock/node"
	"github.com/elock/elock/node/locktable"
)

// FuzzDecodeLockReq: a lock request or a result of any bytes decodes, or
// is refused; never a panic, and what decodes encodes back the same.
func FuzzDecodeLockReq(f *testing.F) {
	f.Add(lockPayload(node.SessionRef{ID: "s", Epoch: 2, Born: 1}, []byte("name"), time.Second, "r1"))
	f.Add(encodeResult(locktable.Result{Status: locktable.Granted, Token: 7, Reentrant: true}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		if q, err := decodeLockReq(b); err == nil {
			again := lockPayload(node.SessionRef{ID: q.session, Epoch: q.epoch, Born: q.born}, q.name, q.wait, q.req)
			if q2, err := decodeLockReq(again); err != nil || q2.session != q.session || string(q2.name) != string(q.name) || q2.wait != q.wait {
				t.Fatalf("%+v did not survive encoding: %+v, %v", q, q2, err)
			}
		}
		if res, err := decodeResult(b); err == nil {
			if r2, err := decodeResult(encodeResult(res)); err != nil || r2 != res {
				t.Fatalf("%+v did not survive encoding: %+v, %v", res, r2, err)
			}
		}
		_, _ = decodeBool(b)
	})
}
