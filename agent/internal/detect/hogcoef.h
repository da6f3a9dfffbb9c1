#ifndef XL_DETECT_HOGCOEF_H
#define XL_DETECT_HOGCOEF_H

#ifdef __cplusplus
extern "C" {
#endif

// xl_hog_default_people_detector copies OpenCV's default HOG people detector
// coefficients into out (room for cap floats). It returns how many there are,
// their negated count when cap is too small, or 0 when OpenCV failed.
int xl_hog_default_people_detector(float* out, int cap);

#ifdef __cplusplus
}
#endif

#endif
