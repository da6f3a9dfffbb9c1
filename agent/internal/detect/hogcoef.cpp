#include <algorithm>
#include <vector>

#include <opencv2/objdetect.hpp>

#include "hogcoef.h"

int xl_hog_default_people_detector(float* out, int cap) {
    try {
        // getDefaultPeopleDetector returns a temporary vector: copy it before
        // it goes away (gocv v0.31 wraps it in a Mat without copying).
        std::vector<float> v = cv::HOGDescriptor::getDefaultPeopleDetector();
        int n = static_cast<int>(v.size());
        if (n > cap) {
            return -n;
        }
        std::copy(v.begin(), v.end(), out);
        return n;
    } catch (...) {
        return 0;
    }
}
