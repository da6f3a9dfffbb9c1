#include <opencv2/core/utility.hpp>

#include "threads.h"

void xl_set_num_threads(int n) {
    try {
        cv::setNumThreads(n > 0 ? n : -1);
    } catch (...) {
    }
}

int xl_get_num_threads(void) {
    try {
        return cv::getNumThreads();
    } catch (...) {
        return 0;
    }
}
