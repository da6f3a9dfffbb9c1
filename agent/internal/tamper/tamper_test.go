package tamper

import (
	"image"
	"os"
	"strings"
	"testing"
	"time"

	"gocv.io/x/gocv"

	"github.com/xueliang/xl/agent/internal/gocvtest"
	"github.com/xueliang/xl/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(gocvtest.RunCheckingMats(m)) }

// clip is vtest.avi at 5 frames per second (every other frame), people
// walking all along: frames [0, n).
func clip(t testing.TB, n int) []gocv.Mat {
	t.Helper()
	out := gocvtest.Frames(t, testenv.Video(t), 2, n)
	t.Cleanup(func() {
		for _, f := range out {
			f.Close()
		}
	})
	if len(out) < n {
		t.Fatalf("vtest.avi ended after %d frames at 5 fps, want %d", len(out), n)
	}
	return out
}

// degrade returns a degraded copy of f (the caller closes it).
func degrade(f gocv.Mat, how string) gocv.Mat {
	out := gocv.NewMat()
	switch how {
	case "black":
		out.Close()
		out = gocv.NewMatWithSizeFromScalar(gocv.NewScalar(3, 3, 3, 0), f.Rows(), f.Cols(), gocv.MatTypeCV8UC3)
	case "covered": // a hand or cloth over the lens: dim, almost uniform
		tiny := gocv.NewMat()
		gocv.Resize(f, &tiny, image.Pt(8, 6), 0, 0, gocv.InterpolationArea)
		gocv.Resize(tiny, &out, image.Pt(f.Cols(), f.Rows()), 0, 0, gocv.InterpolationLinear)
		tiny.Close()
		out.DivideFloat(6)
		out.AddFloat(20)
	case "blur":
		gocv.GaussianBlur(f, &out, image.Pt(0, 0), 4, 4, gocv.BorderReplicate)
	case "shift": // the camera turned: the picture moves 60 px left
		shifted := gocv.NewMatWithSizeFromScalar(gocv.NewScalar(0, 0, 0, 0), f.Rows(), f.Cols(), gocv.MatTypeCV8UC3)
		src := f.Region(image.Rect(60, 0, f.Cols(), f.Rows()))
		dst := shifted.Region(image.Rect(0, 0, f.Cols()-60, f.Rows()))
		src.CopyTo(&dst)
		src.Close()
		dst.Close()
		out.Close()
		out = shifted
	case "night": // dark and noisy
		f.CopyTo(&out)
		out.MultiplyFloat(0.35)
		noise := gocv.NewMatWithSize(f.Rows(), f.Cols(), gocv.MatTypeCV8UC3)
		gocv.RandN(&noise, gocv.NewScalar(0, 0, 0, 0), gocv.NewScalar(12, 12, 12, 0))
		gocv.Add(out, noise, &out)
		noise.Close()
	default:
		f.CopyTo(&out)
	}
	return out
}

// run feeds frames 200 ms apart, the last ones degraded from frame from on,
// and returns the verdicts.
func run(t *testing.T, d *Detector, frames []gocv.Mat, from int, how string) []Verdict {
	t.Helper()
	t0 := time.Date(2026, 11, 21, 20, 0, 0, 0, time.UTC)
	var out []Verdict
	for i, f := range frames {
		in := f
		if i >= from {
			in = degrade(f, how)
		}
		v, err := d.Process(in, t0.Add(time.Duration(i)*200*time.Millisecond))
		if i >= from {
			in.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func reasons(vs []Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		switch v.Reason {
		case "":
			b.WriteByte('.')
		default:
			b.WriteByte(v.Reason[0])
		}
	}
	return b.String()
}

// Real frames of vtest.avi (people walking) and degraded copies made in
// the test: the normal view is never judged tampered with; each kind of
// tampering is found within a frame or two of its start and for as long as
// it lasts.
func TestRealFrames(t *testing.T) {
	frames := clip(t, 100) // 20 s at 5 fps
	const from = 60        // tampering from 12 s
	for _, tc := range []struct {
		how  string
		want byte // reason's first letter from `from` on; '.' for none
	}{
		{"none", '.'},
		{"black", 'c'},
		{"covered", 'c'},
		{"blur", 'b'},
		{"shift", 'm'},
	} {
		t.Run(tc.how, func(t *testing.T) {
			gocvtest.CheckMats(t)
			d, err := New(Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			vs := run(t, d, frames, from, tc.how)
			got := reasons(vs)
			for i := 25; i < len(vs); i += 10 {
				v := vs[i]
				t.Logf("frame %3d %-7s brightness %5.1f contrast %5.1f/%5.1f sharpness %7.1f/%7.1f shift %.4f response %.3f",
					i, v.Reason, v.Brightness, v.Contrast, v.RefContrast, v.Sharpness, v.RefSharpness, v.Shift, v.Response)
			}
			if vs[24].Warm || !vs[25].Warm {
				t.Errorf("warm at frame 24 %v, 25 %v; want after the 25 learning frames", vs[24].Warm, vs[25].Warm)
			}
			normal := got[25:from]
			if strings.Trim(normal, ".") != "" {
				t.Errorf("normal view judged tampered with: %s", normal)
			}
			tampered := got[from+1:]
			if strings.Trim(tampered, string(tc.want)) != "" {
				t.Errorf("from frame %d: %s, want all %c", from+1, tampered, tc.want)
			}
		})
	}
}

// A scene that is dark and noisy from the start (night) is its own
// reference: it is not "covered", however dark.
func TestNightIsNotTampering(t *testing.T) {
	frames := clip(t, 60)
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	vs := run(t, d, frames, 0, "night")
	if got := reasons(vs[25:]); strings.Trim(got, ".") != "" {
		t.Errorf("night judged tampered with: %s (last: %+v)", got, vs[len(vs)-1])
	}
}

// A view moved for RelearnAfter becomes the new normal.
func TestRelearnAfter(t *testing.T) {
	frames := clip(t, 100)
	d, err := New(Config{RelearnAfter: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got := reasons(run(t, d, frames, 40, "shift"))
	// moved from frame 40 (8 s) until 4 s later (frame 60 included), then
	// relearnt for 25 frames, then fine
	if want := strings.Repeat(".", 40) + strings.Repeat("m", 21); got[:61] != want || strings.Trim(got[61:], ".") != "" {
		t.Errorf("got  %s\nwant %s then dots", got, want)
	}
}

func TestBadInputAndConfig(t *testing.T) {
	d, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	empty := gocv.NewMat()
	defer empty.Close()
	if _, err := d.Process(empty, time.Now()); err == nil {
		t.Error("empty frame accepted")
	}
	grey := gocv.NewMatWithSize(100, 100, gocv.MatTypeCV8U)
	defer grey.Close()
	if _, err := d.Process(grey, time.Now()); err == nil {
		t.Error("grey frame accepted")
	}
	for _, c := range []Config{{Width: 10}, {BlurRatio: 1.5}, {Refresh: -1}, {RelearnAfter: -time.Second}} {
		if _, err := New(c); err == nil {
			t.Errorf("config %+v accepted", c)
		}
	}
}
