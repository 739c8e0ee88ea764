from __future__ import annotations

from ._cam import CAM, first_component


class EigenCAM(CAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): the activations, centred over positions, projected on their first
    principal component (class-agnostic, no gradients).

    Sign convention: a principal component's sign is arbitrary; it is chosen so that the map correlates
    positively with the channel-summed activations (the map points where the layer is most active).
    """

    name = "eigen_cam"
    label = "Eigen-CAM"
    paper = "Muhammad & Yeasin 2020, Eigen-CAM: Class Activation Map using Principal Components"
    uses_gradients = False
    gradient_based = False
    eigen_smooth = False  # it is the first principal component already

    def combine(self, acts, grads, eigen=False, **context):
        return first_component(acts, acts.sum(dim=1))
