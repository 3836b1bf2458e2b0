#include <vector>

#include "caffe/layers/bernoulli_sample_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// cuRAND's uniform numbers lie in (0, 1], so [u <= x] is 1 with probability
// exactly x: never for x = 0, always for x = 1 (the CPU uses [0, 1) and <).
template <typename Dtype>
__global__ void BernoulliSampleForward(const int n, const Dtype* prob,
    const Dtype* uniform, Dtype* sample) {
  CUDA_KERNEL_LOOP(index, n) {
    sample[index] = uniform[index] <= prob[index] ? Dtype(1) : Dtype(0);
  }
}

template <typename Dtype>
void BernoulliSampleLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const int count = bottom[0]->count();
  Dtype* uniform = uniform_.mutable_gpu_data();
  caffe_gpu_rng_uniform<Dtype>(count, Dtype(0), Dtype(1), uniform);
  // NOLINT_NEXT_LINE(whitespace/operators)
  BernoulliSampleForward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, bottom[0]->gpu_data(), uniform,
      top[0]->mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
}

template <typename Dtype>
void BernoulliSampleLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[0]) {
    caffe_gpu_set(bottom[0]->count(), Dtype(0), bottom[0]->mutable_gpu_diff());
  }
}

INSTANTIATE_LAYER_GPU_FUNCS(BernoulliSampleLayer);

}  // namespace caffe
